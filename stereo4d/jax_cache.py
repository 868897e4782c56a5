"""JAX's persistent compilation cache: compile the track optimisation once per machine, not per clip.

Each process that runs ``track_opt.optimize_tracks`` would otherwise spend several seconds
compiling its Adam loop (about 8 s on 2 CPU cores). With the cache on, the first process writes
the compiled executable to disk and every later process with the same shapes (see
``track_opt.frame_bucket``: clips share shapes) and the same JAX version loads it instead.

Where: ``--jax_cache_dir`` of the stage, else ``$STEREO4D_JAX_CACHE``, else
``$STEREO4D_CACHE/jax`` or ``~/.cache/stereo4d/jax``. ``none`` (or an empty value) turns it off.
As JAX's documentation warns, a compilation cache is trusted code: keep it in a folder only you
can write to.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "DISABLED", "cache_events", "default_cache_dir",
           "enable_compilation_cache", "resolve_cache_dir"]

CACHE_ENV = "STEREO4D_JAX_CACHE"
"""Environment variable naming the cache folder (overrides the default, not the flag)."""
DISABLED = ("", "none", "off")
"""Values of the flag or the environment variable that turn the cache off."""
MIN_COMPILE_TIME_S = 0.0
"""Cache every executable, however quick its compile (JAX's default, 1 s, would skip small
batch shapes that still cost a fraction of a second each)."""
MIN_ENTRY_SIZE_BYTES = -1
"""No lower size limit on cached entries (JAX: -1 = cache all)."""
MAX_CACHE_BYTES = 1 << 30
"""Cache size limit (1 GiB; least recently used entries go). A limit also makes JAX lock the
folder (``filelock``) around reads and writes, so parallel workers of a batch share it safely."""


_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_MISS_EVENT = "/jax/compilation_cache/cache_misses"
_events = {"hits": 0, "misses": 0}
_listening = False


def _count_event(event: str, **_kwargs) -> None:
    if event == _HIT_EVENT:
        _events["hits"] += 1
    elif event == _MISS_EVENT:
        _events["misses"] += 1


def cache_events() -> dict[str, int]:
    """Persistent-cache hits and misses (executables loaded / compiled) in this process so far,
    counted from ``enable_compilation_cache`` on."""
    return dict(_events)


def default_cache_dir() -> Path:
    """``$STEREO4D_CACHE/jax`` or ``~/.cache/stereo4d/jax`` (beside the weights cache)."""
    return Path(os.environ.get("STEREO4D_CACHE", Path.home() / ".cache" / "stereo4d")) / "jax"


def resolve_cache_dir(flag: str | None = None) -> Path | None:
    """The folder to use: ``flag``, else ``$STEREO4D_JAX_CACHE``, else the default; None = off."""
    value = flag if flag is not None else os.environ.get(CACHE_ENV)
    if value is None:
        return default_cache_dir()
    if value.strip().lower() in DISABLED:
        return None
    return Path(value).expanduser()


def enable_compilation_cache(flag: str | None = None) -> Path | None:
    """Points JAX's persistent compilation cache at ``resolve_cache_dir(flag)``.

    Call before the first compilation of the process (later calls change the folder for later
    compilations only). Returns the folder, or None when the cache is off. A folder that cannot
    be created turns the cache off with a warning: the cache only saves time.
    """
    import jax

    cache_dir = resolve_cache_dir(flag)
    if cache_dir is None:
        return None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"warning: JAX compilation cache off, cannot create {cache_dir}: {exc}")
        return None
    jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_SIZE_BYTES)
    jax.config.update("jax_compilation_cache_max_size", MAX_CACHE_BYTES)
    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count_event)
        _listening = True
    return cache_dir
