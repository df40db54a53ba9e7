"""Why this process cannot reach the GPU, read from the device nodes before the driver is blamed.

Inside a container CUDA fails with a bare error code (100, 801, 35) whatever the cause. The device
nodes say which cause it is: not passed in at all (``--runtime nvidia`` / ``--gpus all`` missing), or
passed in but not openable by the container's user (on a Jetson ``/dev/nvmap`` belongs to the host's
``video`` group; NVIDIA's containers run their user in ``video`` and ``render``). The answer names the
fix, with the group id the node really has, which is the one ``docker run --group-add`` needs.
"""

from __future__ import annotations

import os
from pathlib import Path

DEV = Path("/dev")
JETSON_RELEASE = Path("/etc/nv_tegra_release")  # present on L4T and in NVIDIA's l4t-* images
CONTAINER_MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))

# The nodes CUDA opens. The first of each is indispensable (on Jetson the memory manager, on a discrete
# GPU the control device); the others are checked where they exist (JetPack 5 and 6 differ: nvhost-* vs
# nvgpu/igpu0/*, and the render node of the render group).
JETSON_NODES = ("nvmap", "nvgpu/igpu0/ctrl", "nvhost-ctrl-gpu", "dri/renderD128")
DISCRETE_NODES = ("nvidiactl", "nvidia0", "nvidia-uvm")
JETSON_NODE = JETSON_NODES[0]


def on_jetson() -> bool:
    return JETSON_RELEASE.exists() or (DEV / JETSON_NODE).exists()


def in_container() -> bool:
    return any(marker.exists() for marker in CONTAINER_MARKERS)


def _group(gid: int) -> str:
    import grp  # POSIX only, as are the device nodes asked about

    try:
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}, a group this container does not name"


def gpu_access_problem() -> str | None:
    """What keeps this process from the GPU's device nodes, with the fix; None when they look usable."""
    jetson = on_jetson()
    names = JETSON_NODES if jetson else DISCRETE_NODES
    node = DEV / names[0]
    if not node.exists():
        if jetson:
            return (
                f"{node} is not in this container: start it with --runtime nvidia "
                "(the NVIDIA Container Toolkit must be installed on the Jetson)"
            )
        if in_container():
            return "no NVIDIA device is in this container: start it with --gpus all (or --runtime nvidia)"
        return None  # bare metal without the node: the driver is not loaded, which nvidia-smi shows
    blocked = [DEV / n for n in names if (DEV / n).exists() and not os.access(DEV / n, os.R_OK | os.W_OK)]
    if not blocked:
        return None
    gid = blocked[0].stat().st_gid
    groups = ", ".join(str(g) for g in sorted(set(os.getgroups()))) or "none"
    why = " (NVIDIA's Jetson containers need the video and render groups)" if jetson else ""
    return (
        f"user {os.getuid()} cannot open {blocked[0]}, which belongs to {_group(gid)}, while this process is in "
        f"groups {groups}: run the container as the image's own user (no --user, or add the groups) "
        f"with --group-add {gid}{why}"
    )
