"""Video data: decoding, sampling, transforms, annotation formats, synthetic videos, the dataset.

Real files in, normalised ``(3, T, H, W)`` clips out:

- :mod:`.video`: ``probe_video`` / ``decode_video`` / ``open_video`` over PyAV (default), decord, torchcodec.
- :mod:`.sampling`: segment (TSN) and dense frame indices, test clips, LVU windows.
- :mod:`.transforms`, :mod:`.rand_augment`, :mod:`.mixup`: plain-torch clip transforms.
- :mod:`.annotations`: Kinetics/Breakfast/COIN CSV, SSv2 JSON, HMDB51 splits, LVU, folder-per-class.
- :mod:`.dataset`: ``VideoDataset`` (item keys documented there) and ``load_video_clips``.
- :mod:`.synthetic`: ``make_synthetic``, order-dependent synthetic classes.

PyAV is imported only when a file is opened, so importing this package does not load FFmpeg.
"""
from .annotations import (AnnotationError, Annotations, Sample, load_annotations, load_classes,
                          read_annotations, save_classes)
from .dataset import AugmentConfig, VideoDataset, load_video_clips
from .mixup import Mixup, smooth_one_hot
from .rand_augment import RandAugment
from .sampling import dense_indices, sample_indices, segment_indices, window_bounds
from .synthetic import DEFAULT_CLASSES, SYNTHETIC_CLASSES, make_synthetic
from .transforms import IMAGENET_MEAN, IMAGENET_STD
from .video import (VideoClip, VideoDecodeError, VideoInfo, VideoNotFoundError, VideoReader, decode_video,
                    open_video, probe_video)

__all__ = [
    "AnnotationError", "Annotations", "Sample", "load_annotations", "load_classes", "read_annotations",
    "save_classes", "AugmentConfig", "VideoDataset", "load_video_clips", "Mixup", "smooth_one_hot",
    "RandAugment", "dense_indices", "sample_indices", "segment_indices", "window_bounds", "DEFAULT_CLASSES",
    "SYNTHETIC_CLASSES", "make_synthetic", "IMAGENET_MEAN", "IMAGENET_STD", "VideoClip", "VideoDecodeError",
    "VideoInfo", "VideoNotFoundError", "VideoReader", "decode_video", "open_video", "probe_video",
]
