"""deploy's steps on the device: run there by the target's own python as
`python -c <this file> MODE ROOT [RELEASE]` (remote/deploy.py), printing one JSON object.

Kept Python 3.6 compatible (old Jetson images) and free of edge_eas imports: it runs before
edge_eas is installed on the device. Paths arrive as argv, never through a shell. Modes: probe
(python, platform, libc, a system numpy), board (what the board is; run first, see device_steps.py),
activate / rollback
(the current and previous release links), trust.

EDGE_EAS_SYSFS_ROOT (default /) moves /proc, /sys and /etc to a fake tree, as for firmware_scripts/:
the tests simulate a Jetson or a Raspberry Pi with it."""
import hashlib, json, os, platform, sys


def link_of(p):
    return os.readlink(p) if os.path.islink(p) else None

def relink(target, path):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    os.symlink(target, tmp)
    os.replace(tmp, path)

def sha(p):
    if not os.path.isfile(p):
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()

def system_numpy():
    try:
        import numpy  # the device's system numpy, if it has one (this script runs on the device)
        return {"version": numpy.__version__, "path": os.path.dirname(os.path.abspath(numpy.__file__))}
    except Exception:
        return None

def venv_system_site(root):
    try:
        with open(os.path.join(root, "venv", "pyvenv.cfg")) as f:
            for line in f:
                k, _, v = line.partition("=")
                if k.strip() == "include-system-site-packages":
                    return v.strip().lower() == "true"
    except (IOError, OSError):
        pass
    return None

def read_text(p):
    try:
        with open(p, "rb") as f:
            return f.read().replace(b"\0", b"").decode("utf-8", "replace").strip()
    except (IOError, OSError):
        return None

def board():
    """What the board says it is: device-tree model, the Jetson L4T release line, CPUs, memory."""
    root = os.environ.get("EDGE_EAS_SYSFS_ROOT", "/")
    tegra = read_text(os.path.join(root, "etc", "nv_tegra_release"))
    mem = None
    for line in (read_text(os.path.join(root, "proc", "meminfo")) or read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {"model": read_text(os.path.join(root, "proc", "device-tree", "model")),
            "tegra_release": tegra.splitlines()[0] if tegra else None, "cores": os.cpu_count(), "mem_mib": mem,
            "machine": platform.machine(), "python": platform.python_version(), "libc": list(platform.libc_ver())}

def read_json(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def main():
    mode, root = sys.argv[1], sys.argv[2]
    cur, prev = os.path.join(root, "current"), os.path.join(root, "previous")
    if os.path.exists(cur) and not os.path.islink(cur):
        sys.stderr.write("%s exists and is not a symlink: move it away\n" % cur); sys.exit(4)
    out = {}
    if mode == "board":
        out = board()
    elif mode == "probe":
        rel = sys.argv[3]
        try:
            with open(os.path.join(root, "installed.json")) as f:
                installed = json.load(f)
        except (IOError, OSError, ValueError):
            installed = None
        out = {"python": platform.python_version(), "version": list(sys.version_info[:2]),
               "machine": platform.machine(), "libc": list(platform.libc_ver()), "impl": sys.implementation.name,
               "venv": os.path.isfile(os.path.join(root, "venv", "bin", "python")), "installed": installed,
               "venv_system_site": venv_system_site(root), "system_numpy": system_numpy(),
               "current": link_of(cur), "previous": link_of(prev),
               "release_sha256": sha(os.path.join(root, rel, "model.eas")),
               "release_smoke": os.path.isfile(os.path.join(root, rel, "smoke.json")),
               "trust": link_of(os.path.join(root, "trust")), "trust_store": read_json(os.path.join(root, "trust", "trust.json"))}
    elif mode == "trust":
        link = os.path.join(root, "trust")
        old = link_of(link)
        if sys.argv[3] == "-":
            if old:
                os.remove(link)
        else:
            relink(sys.argv[3], link)
        out = {"changed": old != sys.argv[3], "previous": old}
    elif mode == "activate":
        rel, old = sys.argv[3], link_of(cur)
        if old != rel:
            if old:
                relink(old, prev)
            relink(rel, cur)
        out = {"changed": old != rel, "current": rel, "previous": link_of(prev)}
    elif mode == "rollback":
        old, back = link_of(cur), link_of(prev)
        if not back or not os.path.isdir(os.path.join(root, back)):
            sys.stderr.write("no previous deployment in %s to roll back to\n" % root); sys.exit(5)
        relink(back, cur)
        if old:
            relink(old, prev)
        out = {"changed": True, "current": back, "previous": old}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
