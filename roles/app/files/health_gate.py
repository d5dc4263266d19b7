import ssl, sys, time, urllib.request
url, wanted, timeout, expect = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline, streak, last = time.monotonic() + timeout, 0, "no answer yet"
while streak < wanted:
    if time.monotonic() > deadline:
        sys.exit("health gate: %d good answers in a row wanted from %s within %ss; last: %s" % (wanted, url, timeout, last))
    try:
        with urllib.request.urlopen(url, timeout=3, context=ssl._create_unverified_context()) as r:
            body = r.read().decode("utf-8", "replace")
        ok = expect in body
        last = body[:200] if ok else "answer without %r: %s" % (expect, body[:200])
    except Exception as e:
        ok, last = False, "%s: %s" % (type(e).__name__, str(e)[:200])
    streak = streak + 1 if ok else 0
    time.sleep(0.5)
print("health gate passed: %d good answers in a row from %s" % (wanted, url))
