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

# The node CUDA cannot do without: on Jetson the memory manager, on a discrete GPU the control device.
JETSON_NODE = "nvmap"
DISCRETE_NODE = "nvidiactl"


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
    """What keeps this process from the GPU's device node, with the fix; None when the node looks usable."""
    jetson = on_jetson()
    node = DEV / (JETSON_NODE if jetson else DISCRETE_NODE)
    if not node.exists():
        if jetson:
            return (
                f"{node} is not in this container: start it with --runtime nvidia "
                "(the NVIDIA Container Toolkit must be installed on the Jetson)"
            )
        if in_container():
            return "no NVIDIA device is in this container: start it with --gpus all (or --runtime nvidia)"
        return None  # bare metal without the node: the driver is not loaded, which nvidia-smi shows
    if os.access(node, os.R_OK | os.W_OK):
        return None
    gid = node.stat().st_gid
    groups = ", ".join(str(g) for g in sorted(set(os.getgroups()))) or "none"
    why = " (NVIDIA's Jetson containers need the video and render groups)" if jetson else ""
    return (
        f"user {os.getuid()} cannot open {node}, which belongs to {_group(gid)}, while this process is in "
        f"groups {groups}: run the container as the image's own user (no --user, or add the groups) "
        f"with --group-add {gid}{why}"
    )
