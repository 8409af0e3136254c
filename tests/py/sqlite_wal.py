import sqlite3, os, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA cache_size=5")
c.execute("CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v TEXT)")
c.execute("BEGIN")
c.execute("CREATE TEMP TABLE scratch(x)")
c.execute("PRAGMA temp.cache_size=5")
c.executemany("INSERT INTO scratch VALUES (?)", [(("row%d" % i) * 20,) for i in range(3000)])
c.executemany("INSERT INTO kv(v) VALUES (?)", [("v%d" % i,) for i in range(500)])
def link(f):
    try:
        return os.readlink("/proc/self/fd/" + f)
    except OSError:
        return ""
deleted = [f for f in os.listdir("/proc/self/fd") if link(f).endswith(" (deleted)")]
print("holds an unlinked file:", bool(deleted))
print("waiting", flush=True)
time.sleep(2)
c.executemany("INSERT INTO kv(v) VALUES (?)", [("w%d" % i,) for i in range(500)])
print("scratch rows:", c.execute("SELECT count(*), sum(length(x)) FROM scratch").fetchone())
c.execute("COMMIT")
d = sqlite3.connect(sys.argv[1])
print("committed rows:", d.execute("SELECT count(*), min(v), max(v) FROM kv").fetchone())
print("integrity:", d.execute("PRAGMA integrity_check").fetchone()[0])
print("sqlite ok")
