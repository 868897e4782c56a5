"""All file I/O, one module per concern; this package re-exports their public names.

- ``paths``: the clip id check and ``ClipPaths`` (every path of a clip);
- ``stage_files``: which files each stage reads and writes (one list per stage);
- ``files``: atomic writes, stale temporaries, pickles, JSON;
- ``stereo``: the stereo stage's compact file and pickle;
- ``segmentation``: the filtering stage's record;
- ``dataset``: the released dataset npz.
Safe pickle reading lives in ``stereo4d.pickles`` (re-exported here).
"""

from stereo4d.dataset_checks import validate_dataset_arrays
from stereo4d.errors import InputError
from stereo4d.io.dataset import (
    DATASET_KEYS,
    load_dataset_npz,
    pack_tracks,
    save_dataset_npz,
    unpack_tracks,
)
from stereo4d.io.files import (
    TEMP_MARK,
    atomic_path,
    load_json,
    remove_stale_temporaries,
    save_json,
    save_pickle,
)
from stereo4d.io.paths import MAX_VID_LENGTH, ClipPaths, split_vid
from stereo4d.io.segmentation import (
    REMOVED_PREFIX,
    load_removal_reasons,
    load_segmentation,
    save_segmentation,
)
from stereo4d.io.stereo import (
    STEREO_COMPACT_VERSION,
    STEREO_FLOW_STEP_PX,
    load_stereo_flows,
    save_stereo_compact,
)
from stereo4d.pickles import SAFE_PICKLE_GLOBALS, load_pickle, load_tracks_2d, safe_pickle_loads

__all__ = [
    "DATASET_KEYS",
    "MAX_VID_LENGTH",
    "REMOVED_PREFIX",
    "SAFE_PICKLE_GLOBALS",
    "STEREO_COMPACT_VERSION",
    "STEREO_FLOW_STEP_PX",
    "TEMP_MARK",
    "ClipPaths",
    "InputError",
    "atomic_path",
    "load_dataset_npz",
    "load_json",
    "load_pickle",
    "load_removal_reasons",
    "load_segmentation",
    "load_stereo_flows",
    "load_tracks_2d",
    "pack_tracks",
    "remove_stale_temporaries",
    "safe_pickle_loads",
    "save_dataset_npz",
    "save_json",
    "save_pickle",
    "save_segmentation",
    "save_stereo_compact",
    "split_vid",
    "unpack_tracks",
    "validate_dataset_arrays",
]
