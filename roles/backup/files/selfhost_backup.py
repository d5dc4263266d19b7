#!/usr/bin/python3
# Copyright (c) selfhost.stack developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups of a stack's PostgreSQL database (installed by the selfhost.stack.backup role).

    selfhost-backup APP run [--no-prune]      back up now (what the systemd service runs)
    selfhost-backup APP list                  backups, newest first, as JSON
    selfhost-backup APP resolve NAME|latest   the backup's file name (exit 1 if there is none)
    selfhost-backup APP check NAME|latest     compare the backup with its .sha256 file
    selfhost-backup APP restore NAME|latest   restore into the live database (pg_restore --clean)
    selfhost-backup APP verify NAME|latest    restore into a throwaway container, compare row counts

APP reads /etc/selfhost-backup/APP.json (written by the role); --config names another file.
pg_dump and pg_restore run inside the stack's PostgreSQL container, so the host needs no PostgreSQL
client: the Compose service's container (engine compose), or the task of the Swarm service
APP_SERVICE that runs on this node (engine swarm). Messages go to stderr (the journal), data to stdout.
"""

import argparse
import contextlib
import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import backup_rotation as rot  # noqa: E402  (installed next to this script)

CHUNK = 1 << 20
CONFIG_DIR = "/etc/selfhost-backup"
UNDER_SYSTEMD = "INVOCATION_ID" in os.environ
# Runs inside the PostgreSQL container, with the container's own user and database.
PG_DUMP = 'exec pg_dump --format=custom --username="$POSTGRES_USER" --dbname="${POSTGRES_DB:-$POSTGRES_USER}" "$@"'
PG_LIST = "exec pg_restore --list"
PG_RESTORE = (
    'exec pg_restore --clean --if-exists --single-transaction --exit-on-error '
    '--username="$POSTGRES_USER" --dbname="${POSTGRES_DB:-$POSTGRES_USER}"'
)
PG_RESTORE_THROWAWAY = (
    'exec pg_restore --no-owner --no-privileges --single-transaction --exit-on-error '
    '--username="$POSTGRES_USER" --dbname="${POSTGRES_DB:-$POSTGRES_USER}"'
)
PSQL = 'exec psql -X -q -A -t -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname="${POSTGRES_DB:-$POSTGRES_USER}"'
# Exact row count of every table, as one JSON object {"schema.table": rows}.
ROW_COUNTS_SQL = """
SELECT coalesce(json_object_agg(t.name, t.rows ORDER BY t.name), '{}')
FROM (SELECT format('%I.%I', table_schema, table_name) AS name,
             (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name),
                                                  false, true, '')))[1]::text::bigint AS rows
      FROM information_schema.tables
      WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')) AS t;
"""
METRICS = (
    ("last_success_timestamp_seconds", "Unix time of the last successful backup (0: none yet)."),
    ("last_attempt_timestamp_seconds", "Unix time the last backup attempt started."),
    ("last_result", "1 if the last backup attempt succeeded, 0 if it failed."),
    ("last_size_bytes", "Size of the last successful backup file in bytes."),
    ("last_duration_seconds", "Duration of the last backup attempt in seconds."),
    ("files", "Backups in the backup directory after the last attempt."),
)
MISMATCH = 3


class BackupError(Exception):
    """A step failed; the message says which and why."""


class PruneError(BackupError):
    """Pruning failed after the new backup was complete."""


class Terminated(BaseException):
    """SIGTERM (systemd's stop or timeout): clean up like on any failure."""


def _on_sigterm(signum, frame):
    raise Terminated("terminated by signal %d" % signum)


def say(message, level=6):
    # "<N>" is the syslog priority systemd reads from a service's output (3 = err, 4 = warning).
    prefix = "<%d>" % level if UNDER_SYSTEMD else ""
    for line in str(message).splitlines() or [""]:
        sys.stderr.write("%s%s\n" % (prefix, line))
    sys.stderr.flush()


def load_config(args):
    path = args.config or os.path.join(CONFIG_DIR, "%s.json" % args.app)
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise BackupError("cannot read the configuration %s: %s" % (path, exc)) from exc
    for key in ("app_name", "project_dir", "service", "backup_dir", "status_file", "keep"):
        if key not in cfg:
            raise BackupError("configuration %s lacks %r" % (path, key))
    if cfg["app_name"] != args.app:
        raise BackupError("configuration %s is for app %r, not %r" % (path, cfg["app_name"], args.app))
    return cfg


def compose(cfg, *args):
    return ["docker", "compose", "--project-directory", cfg["project_dir"], *args]


def postgres_container(cfg):
    """ID of the running PostgreSQL container on this host."""
    if cfg.get("engine", "compose") == "swarm":
        service = "%s_%s" % (cfg["app_name"], cfg["service"])
        cmd = ["docker", "ps", "--quiet", "--filter", "status=running",
               "--filter", "label=com.docker.swarm.service.name=%s" % service]
        missing = ("no task of the Swarm service %s runs on this node: back up on the node that runs PostgreSQL "
                   "(docker service ps %s on a manager shows it)" % (service, service))
    else:
        cmd = compose(cfg, "ps", "--quiet", cfg["service"])
        missing = "the %r service of %s is not running" % (cfg["service"], cfg["project_dir"])
    ids = run_checked(cmd, "finding the PostgreSQL container", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True).stdout.split()
    if not ids:
        raise BackupError(missing)
    return ids[0]


def in_postgres(cfg, script, *args):
    """A shell script run in the PostgreSQL container, stdin attached, no TTY."""
    if cfg.get("engine", "compose") == "swarm":
        return ["docker", "exec", "-i", postgres_container(cfg), "sh", "-c", script, "sh", *args]
    return compose(cfg, "exec", "-T", cfg["service"], "sh", "-c", script, "sh", *args)


def run_checked(cmd, what, **kwargs):
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        result = subprocess.run(cmd, check=False, **kwargs)
    except OSError as exc:
        raise BackupError("%s: cannot run %s: %s" % (what, cmd[0], exc)) from exc
    if result.returncode != 0:
        detail = ""
        if isinstance(result.stderr, (bytes, str)) and result.stderr:
            detail = ": " + (result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr).strip()[-2000:]
        raise BackupError("%s failed (exit %d)%s" % (what, result.returncode, detail))
    return result


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, data, mode=0o600):
    """Write data to a temporary file next to path, then rename it over path."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(cfg):
    """One backup, restore or verify of an app at a time."""
    with open(os.path.join(cfg["backup_dir"], ".lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            say("waiting for another backup, restore or verify of %s to finish" % cfg["app_name"])
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ------------------------------------------------------------------------------------ listing

def list_backups(cfg):
    """(name, verified) of the app's backups, newest first; verified: its .sha256 file exists."""
    names = set(os.listdir(cfg["backup_dir"]))
    found = [(rot.parse_name(n, cfg["app_name"])[1], n) for n in names if rot.parse_name(n, cfg["app_name"])]
    return [(n, n + ".sha256" in names) for _, n in sorted(found, reverse=True)]


def resolve(cfg, name):
    backups = list_backups(cfg)
    if name in ("", "latest"):
        if not backups:
            raise BackupError("there is no backup of %s in %s" % (cfg["app_name"], cfg["backup_dir"]))
        return backups[0][0]
    if "/" in name or rot.parse_name(name, cfg["app_name"]) is None:
        raise BackupError(
            "%r is not a backup file name of %s: expected %s-YYYYmmddTHHMMSSZ.dump[.age] (a name in %s, not a path)"
            % (name, cfg["app_name"], cfg["app_name"], cfg["backup_dir"]))
    if name not in [n for n, _ in backups]:
        newest = ", ".join(n for n, _ in backups[:5]) or "none"
        raise BackupError("there is no backup %s in %s (newest: %s)" % (name, cfg["backup_dir"], newest))
    return name


def check(cfg, name):
    """Raise unless the backup's sha256 equals the one in its checksum file."""
    path = os.path.join(cfg["backup_dir"], name)
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            expected = f.read().split()[0].lower()
    except (OSError, IndexError) as exc:
        raise BackupError("%s has no checksum file %s.sha256: it was never verified, refusing to use it" % (path, name)) from exc
    actual = sha256_file(path)
    if actual != expected:
        raise BackupError("checksum mismatch for %s: the file has sha256 %s, %s.sha256 says %s" % (path, actual, name, expected))
    return actual


# ------------------------------------------------------------------------------------- backup

def clean_partials(cfg):
    for name in os.listdir(cfg["backup_dir"]):
        if name.startswith(".") and name.endswith(".partial"):
            say("removing %s, left by an interrupted backup" % name, 4)
            os.unlink(os.path.join(cfg["backup_dir"], name))


def dump(cfg, tmp):
    """pg_dump into tmp; returns (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    cmd = in_postgres(cfg, PG_DUMP, *cfg.get("pg_dump_options", []))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        try:
            for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        finally:
            proc.stdout.close()
            rc = proc.wait()
        out.flush()
        os.fsync(out.fileno())
    if rc != 0:
        raise BackupError("pg_dump in service %r of %s failed (exit %d), see the messages above"
                          % (cfg["service"], cfg["app_name"], rc))
    with open(tmp, "rb") as f:
        if f.read(5) != b"PGDMP":
            raise BackupError("pg_dump wrote no custom-format archive (%d bytes)" % size)
    return digest.hexdigest(), size


def verify_archive(cfg, path):
    """pg_restore --list inside the PostgreSQL container must read the archive's table of contents."""
    with open(path, "rb") as f:
        result = run_checked(in_postgres(cfg, PG_LIST), "pg_restore --list (verification)", stdin=f,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing = result.stdout.decode(errors="replace")
    if "; Archive created at" not in listing or "Format: CUSTOM" not in listing:
        raise BackupError("pg_restore --list did not list a custom-format archive")
    entries = [line for line in listing.splitlines() if line and not line.startswith(";")]
    tables = [line for line in entries if " TABLE DATA " in line]
    return len(entries), len(tables)


def encrypt(cfg, plain, encrypted):
    cmd = ["age", "--encrypt"]
    for recipient in cfg["age_recipients"]:
        cmd += ["--recipient", recipient]
    run_checked(cmd + ["--output", encrypted, plain], "age --encrypt", stderr=subprocess.PIPE)
    os.chmod(encrypted, 0o600)


def ssh_command(remote):
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
           "-o", "StrictHostKeyChecking=%s" % remote.get("strict_host_key_checking", "yes"),
           "-o", "UserKnownHostsFile=%s" % remote["known_hosts_file"]]
    if remote.get("port"):
        ssh += ["-p", str(remote["port"])]
    if remote.get("ssh_key"):
        ssh += ["-i", remote["ssh_key"], "-o", "IdentitiesOnly=yes"]
    return " ".join(shlex.quote(part) for part in ssh)


def copy_offsite(cfg, paths):
    remote = cfg["remote"]
    # rsync writes to a temporary name on the other side and renames when complete.
    cmd = ["rsync", "--times", "--chmod=F600", "--timeout=300", "-e", ssh_command(remote), *paths, remote["target"]]
    started = time.monotonic()
    run_checked(cmd, "copy to %s (rsync over SSH)" % remote["target"], stderr=subprocess.PIPE)
    say("copied %s to %s in %.1f s" % (", ".join(os.path.basename(p) for p in paths), remote["target"], time.monotonic() - started))


def prune(cfg):
    backups = list_backups(cfg)
    keep = cfg["keep"]
    result = rot.plan(backups, keep_last=keep["last"], keep_daily=keep["daily"],
                      keep_weekly=keep["weekly"], keep_monthly=keep["monthly"])
    directory = cfg["backup_dir"]
    for name in result["delete"]:
        say("deleting %s (outside the retention policy)" % name)
        os.unlink(os.path.join(directory, name))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name + ".sha256"))
    # Checksum files whose backup is gone (removed by hand, or a crash between the two renames).
    present = set(os.listdir(directory))
    for name in present:
        if name.endswith(".sha256") and rot.parse_name(name[:-7], cfg["app_name"]) and name[:-7] not in present:
            say("deleting %s (its backup is gone)" % name)
            os.unlink(os.path.join(directory, name))
    fsync_dir(directory)
    for name in result["keep"]:
        say("keeping %s (%s)" % (name, ", ".join(result["reasons"][name])))
    return len(result["keep"])


def backup(cfg, no_prune=False):
    directory = cfg["backup_dir"]
    started = time.monotonic()
    clean_partials(cfg)
    now = datetime.datetime.now(datetime.timezone.utc)
    encrypted = bool(cfg.get("age_recipients"))
    name = rot.backup_name(cfg["app_name"], now, encrypted)
    while os.path.exists(os.path.join(directory, name)):  # two backups within one second
        now += datetime.timedelta(seconds=1)
        name = rot.backup_name(cfg["app_name"], now, encrypted)
    plain_tmp = os.path.join(directory, ".%s.partial" % rot.backup_name(cfg["app_name"], now))
    final_tmp = os.path.join(directory, ".%s.partial" % name)
    final = os.path.join(directory, name)
    say("backing up database of %s (service %r) to %s" % (cfg["app_name"], cfg["service"], final))
    try:
        digest, size = dump(cfg, plain_tmp)
        say("pg_dump wrote %d bytes in %.1f s" % (size, time.monotonic() - started))
        entries, tables = verify_archive(cfg, plain_tmp)
        say("pg_restore --list read the archive: %d entries, %d tables with data" % (entries, tables))
        if encrypted:
            encrypt(cfg, plain_tmp, final_tmp)
            os.unlink(plain_tmp)
            digest, size = sha256_file(final_tmp), os.path.getsize(final_tmp)
            say("encrypted with age to %d recipient(s): %d bytes" % (len(cfg["age_recipients"]), size))
        # The checksum first: a backup under its final name always has one.
        write_atomically(final + ".sha256", ("%s  %s\n" % (digest, name)).encode())
        os.replace(final_tmp, final)
        fsync_dir(directory)
    except BaseException:
        for tmp in (plain_tmp, final_tmp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
                say("removed the incomplete %s" % os.path.basename(tmp), 3)
        raise
    say("backup %s complete: %d bytes, sha256 %s" % (name, size, digest))
    if cfg.get("remote"):
        copy_offsite(cfg, [final, final + ".sha256"])
    if no_prune:
        say("not pruning (--no-prune)")
    else:
        try:
            prune(cfg)
        except (OSError, rot.RotationError) as exc:
            raise PruneError("backup %s is complete, but pruning failed: %s" % (name, exc)) from exc
    return name, size


def read_status(path):
    values = {}
    with contextlib.suppress(OSError):
        with open(path, encoding="utf-8") as f:
            for line in f:
                match = re.match(r"^selfhost_backup_([a-z_]+)\{[^}]*\} (\S+)$", line.strip())
                if match:
                    with contextlib.suppress(ValueError):
                        values[match.group(1)] = float(match.group(2))
    return values


def write_status(cfg, attempt, duration, ok, size, files):
    """node_exporter textfile collector format, replaced atomically."""
    path = cfg["status_file"]
    previous = read_status(path)
    values = {
        "last_success_timestamp_seconds": attempt + duration if ok else previous.get("last_success_timestamp_seconds", 0),
        "last_attempt_timestamp_seconds": attempt,
        "last_result": 1 if ok else 0,
        "last_size_bytes": size if ok else previous.get("last_size_bytes", 0),
        "last_duration_seconds": duration,
        "files": files,
    }
    label = '{app="%s"}' % cfg["app_name"].replace("\\", "\\\\").replace('"', '\\"')
    lines = []
    for key, text in METRICS:
        metric = "selfhost_backup_" + key
        value = values[key]
        lines += ["# HELP %s %s" % (metric, text), "# TYPE %s gauge" % metric,
                  "%s%s %s" % (metric, label, ("%d" % value) if float(value).is_integer() else ("%.3f" % value))]
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomically(path, ("\n".join(lines) + "\n").encode(), mode=0o644)


def cmd_run(cfg, args):
    attempt = time.time()
    started = time.monotonic()
    ok, size = False, 0
    try:
        with locked(cfg):
            size = backup(cfg, no_prune=args.no_prune)[1]
        ok = True
    except PruneError as exc:
        say("backup of %s FAILED: %s" % (cfg["app_name"], exc), 3)
    except (BackupError, Terminated, OSError, rot.RotationError) as exc:
        say("backup of %s FAILED: %s" % (cfg["app_name"], exc), 3)
        say("no older backup was pruned", 3)
    except Exception as exc:  # pylint: disable=broad-except  # a bug must still fail loudly and show in the status
        say("backup of %s FAILED: unexpected %s: %s" % (cfg["app_name"], type(exc).__name__, exc), 3)
        say("no older backup was pruned", 3)
    files = 0
    with contextlib.suppress(OSError):
        files = len(list_backups(cfg))
    try:
        write_status(cfg, attempt, time.monotonic() - started, ok, size, files)
    except OSError as exc:
        say("cannot write the status file %s: %s" % (cfg["status_file"], exc), 3)
        return 1
    return 0 if ok else 1


# -------------------------------------------------------------------------- restore and verify

def need_identity(name, identity):
    if name.endswith(".age") and not identity:
        raise BackupError("%s is encrypted: give the age identity file (--identity)" % name)
    if identity and not os.path.isfile(identity):
        raise BackupError("the age identity file %s does not exist" % identity)


@contextlib.contextmanager
def backup_stream(cfg, name, identity):
    """A readable file object of the backup's plain archive (decrypted on the fly with age)."""
    path = os.path.join(cfg["backup_dir"], name)
    if not name.endswith(".age"):
        with open(path, "rb") as f:
            yield f
        return
    proc = subprocess.Popen(["age", "--decrypt", "--identity", identity, path], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise BackupError("age --decrypt of %s failed: %s" % (name, err))


def cmd_restore(cfg, args):
    with locked(cfg):
        name = resolve(cfg, args.name)
        need_identity(name, args.identity)
        check(cfg, name)
        say("checksum of %s matches; restoring it into the live database (one transaction)" % name)
        started = time.monotonic()
        with backup_stream(cfg, name, args.identity) as stream:
            run_checked(in_postgres(cfg, PG_RESTORE), "pg_restore of %s" % name, stdin=stream)
        say("restored %s in %.1f s" % (name, time.monotonic() - started))
        print(json.dumps({"restored": name}))
    return 0


def docker_inspect(ref, template):
    return run_checked(["docker", "inspect", "--format", template, ref], "docker inspect %s" % ref,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout.strip()


def live_counts(cfg):
    out = run_checked(in_postgres(cfg, PSQL), "row counts of the live database", input=ROW_COUNTS_SQL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip() or "{}")


def cmd_verify(cfg, args):
    container = "%s-backup-verify" % cfg["app_name"]
    with locked(cfg):
        name = resolve(cfg, args.name)
        need_identity(name, args.identity)
        check(cfg, name)
        live_id = postgres_container(cfg)
        image = docker_inspect(live_id, "{{.Image}}")
        env = dict(v.split("=", 1) for v in json.loads(docker_inspect(live_id, "{{json .Config.Env}}")) if "=" in v)
        user = env.get("POSTGRES_USER", "postgres")
        database = env.get("POSTGRES_DB", user)
        subprocess.run(["docker", "rm", "--force", "--volumes", container], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        say("starting a throwaway PostgreSQL container %s (no network) to restore %s into" % (container, name))
        run_checked(["docker", "run", "--detach", "--name", container, "--network", "none",
                     "--label", "selfhost.backup.verify=%s" % cfg["app_name"], "--shm-size", "256m",
                     "--env", "POSTGRES_USER=%s" % user, "--env", "POSTGRES_DB=%s" % database,
                     "--env", "POSTGRES_HOST_AUTH_METHOD=trust", image],
                    "docker run (throwaway PostgreSQL)", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + args.timeout
            while subprocess.run(["docker", "exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", user, "-d", database],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise BackupError("the throwaway PostgreSQL did not become ready within %d s" % args.timeout)
                time.sleep(1)
            started = time.monotonic()
            with backup_stream(cfg, name, args.identity) as stream:
                run_checked(["docker", "exec", "-i", container, "sh", "-c", PG_RESTORE_THROWAWAY],
                            "pg_restore of %s into the throwaway container" % name, stdin=stream, stderr=subprocess.PIPE)
            say("restored %s into %s in %.1f s" % (name, container, time.monotonic() - started))
            restored = json.loads(run_checked(["docker", "exec", "-i", container, "sh", "-c", PSQL], "row counts of the restored copy",
                                              input=ROW_COUNTS_SQL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True).stdout.strip() or "{}")
            live = live_counts(cfg)
        finally:
            subprocess.run(["docker", "rm", "--force", "--volumes", container], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    tables = {t: {"backup": restored.get(t), "live": live.get(t)} for t in sorted(set(restored) | set(live))}
    differences = ["%s: %s rows in the backup, %s live" % (t, c["backup"], c["live"]) for t, c in tables.items()
                   if c["backup"] != c["live"]]
    print(json.dumps({"file": name, "tables": tables, "differences": differences}))
    for line in differences:
        say("difference: " + line, 4)
    say("%s: %d tables compared, %d differ" % (name, len(tables), len(differences)))
    return MISMATCH if differences else 0


def cmd_list(cfg, args):
    result = []
    for name, verified in list_backups(cfg):
        path = os.path.join(cfg["backup_dir"], name)
        result.append({"name": name, "path": path, "size": os.path.getsize(path), "verified": verified,
                       "time": rot.parse_name(name)[1].isoformat()})
    print(json.dumps(result, indent=2))
    return 0


def cmd_resolve(cfg, args):
    print(resolve(cfg, args.name))
    return 0


def cmd_check(cfg, args):
    name = resolve(cfg, args.name)
    digest = check(cfg, name)
    say("%s: checksum OK (sha256 %s)" % (name, digest))
    print(name)
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="selfhost-backup", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="configuration file instead of %s/APP.json" % CONFIG_DIR)
    parser.add_argument("app", help="the app (its Compose project name), configured in %s/APP.json" % CONFIG_DIR)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="back up now, verify, copy, prune, write the status file")
    p.add_argument("--no-prune", action="store_true", help="keep every older backup (safety backups)")
    p.set_defaults(func=cmd_run)
    sub.add_parser("list", help="backups as JSON").set_defaults(func=cmd_list)
    for command, func, text in (("resolve", cmd_resolve, "print the backup's name"),
                                ("check", cmd_check, "compare with the checksum file"),
                                ("restore", cmd_restore, "restore into the live database"),
                                ("verify", cmd_verify, "restore into a throwaway container and compare row counts")):
        p = sub.add_parser(command, help=text)
        p.add_argument("name", help="backup file name, or 'latest'")
        if command in ("restore", "verify"):
            p.add_argument("--identity", help="age identity file, for encrypted backups")
        if command == "verify":
            p.add_argument("--timeout", type=int, default=180, help="seconds to wait for the throwaway PostgreSQL")
        p.set_defaults(func=func)
    return parser.parse_args(argv)


def main(argv=None):
    os.umask(0o077)
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args)
        return args.func(cfg, args)
    except (BackupError, rot.RotationError, OSError, Terminated) as exc:
        say("%s %s failed: %s" % (args.command, getattr(args, "name", ""), exc), 3)
        return 1


if __name__ == "__main__":
    sys.exit(main())
