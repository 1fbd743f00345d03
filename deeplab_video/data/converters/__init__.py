"""Dataset converters: raw video panoptic datasets -> TFRecord shards, one record per frame.

kitti_step (DeepLab2's layout), vipseg (VIPSeg_720P, raw or COCO-panoptic masks) and
cityscapes_vps (the mcahny/vps release) list and check a dataset, then write it with
common.write_split (all-or-nothing per split); their *_cli modules are the command lines.
"""
