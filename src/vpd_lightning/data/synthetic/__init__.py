"""Small synthetic data sets written in the exact on-disk layout of the real ones, one module per data set.

=================================  ============================  ==============================================
module                             writes                        renderer
=================================  ============================  ==============================================
:mod:`.nyuv2`                      ``generate_nyuv2``            ``render_room`` (ray-cast rooms, depth)
:mod:`.ade20k`                     ``generate_ade20k``           ``render_ade_scene`` (2-D shapes, 150 classes)
:mod:`.refcoco`                    ``generate_refcoco``          ``render_refcoco_image`` (shapes + sentences)
:mod:`.kitti`                      ``generate_kitti``            the rooms, depth x8 and sparse
:mod:`.cityscapes`                 ``generate_cityscapes``       ``render_street``
:mod:`.voc`                        ``generate_voc``              ``render_voc``
:mod:`.depth_folder`               ``generate_depth_folder``     the rooms
:mod:`.referring_folder`           ``generate_referring_folder`` boxes and triangles
=================================  ============================  ==============================================

The data sets' own constants (class lists, split names, focal lengths, colour maps) live with their data
modules (:mod:`vpd_lightning.data.nyuv2` etc.); the generators import them from there, never the reverse.
The command lines are in :mod:`.cli`; ``vpd_lightning.data.generate`` (and ``generate_kitti``,
``generate_segmentation``, ``generate_folders``) keep their old names and ``python -m`` entry points.
"""

from vpd_lightning.data.synthetic.ade20k import generate_ade20k, render_ade_scene
from vpd_lightning.data.synthetic.cityscapes import generate_cityscapes, render_street
from vpd_lightning.data.synthetic.depth_folder import generate_depth_folder
from vpd_lightning.data.synthetic.kitti import generate_kitti
from vpd_lightning.data.synthetic.nyuv2 import generate_nyuv2, render_room
from vpd_lightning.data.synthetic.refcoco import generate_refcoco, render_refcoco_image
from vpd_lightning.data.synthetic.referring_folder import generate_referring_folder
from vpd_lightning.data.synthetic.voc import generate_voc, render_voc

__all__ = [
    "generate_ade20k",
    "generate_cityscapes",
    "generate_depth_folder",
    "generate_kitti",
    "generate_nyuv2",
    "generate_refcoco",
    "generate_referring_folder",
    "generate_voc",
    "render_ade_scene",
    "render_refcoco_image",
    "render_room",
    "render_street",
    "render_voc",
]
