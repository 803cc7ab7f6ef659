"""The depth-folder and referring-folder generators under their first name (they live in
:mod:`vpd_lightning.data.synthetic`)::

    python -m vpd_lightning.data.generate_folders depth --root DIR [--npy --masks --num-train N ...]
    python -m vpd_lightning.data.generate_folders referring --root DIR [--num-train N --num-val N ...]
"""

from vpd_lightning.data.synthetic.cli import folders_main as main
from vpd_lightning.data.synthetic.depth_folder import generate_depth_folder
from vpd_lightning.data.synthetic.referring_folder import generate_referring_folder

__all__ = ["generate_depth_folder", "generate_referring_folder", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
