"""How much memory this PC has free right now: free VRAM on a GPU, available RAM otherwise."""

from __future__ import annotations

import os


def probe_free_bytes(device: str = "cpu") -> int:
    """Free bytes on `device` ("cuda", "cuda:1", or "cpu")."""
    if device.startswith("cuda"):
        import torch

        free_bytes, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free_bytes)
    return available_ram_bytes()


def available_ram_bytes(meminfo_path: str = "/proc/meminfo") -> int:
    """RAM the OS can give to new work without swapping (Linux MemAvailable; a sysconf estimate elsewhere)."""
    try:
        with open(meminfo_path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        raise RuntimeError("cannot tell how much memory is free on this system; pass --num-blocks") from None
