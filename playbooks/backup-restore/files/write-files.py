"""Write the files and folders listed as JSON on stdin; print what changed (JSON).

Each entry: path, owner, group, mode (octal string) and content (a folder when absent).
Used by setup.yml to write all the business data in one task: the contents travel on
stdin and nothing but the data itself is left on the node.
"""
import grp
import json
import os
import pwd
import stat
import sys

changed = []
for entry in json.load(sys.stdin):
    path = entry["path"]
    uid, gid = pwd.getpwnam(entry["owner"]).pw_uid, grp.getgrnam(entry["group"]).gr_gid
    mode = int(entry["mode"], 8)
    if entry.get("content") is None:
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
            changed.append(path)
    else:
        data = entry["content"].encode()
        try:
            with open(path, "rb") as current:
                same = current.read() == data
        except FileNotFoundError:
            same = False
        if not same:
            with open(path + ".new", "wb") as new:
                new.write(data)
            os.replace(path + ".new", path)
            changed.append(path)
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed.append(path)
    if stat.S_IMODE(os.lstat(path).st_mode) != mode:
        os.chmod(path, mode)
        changed.append(path)
print(json.dumps(sorted(set(changed))))
