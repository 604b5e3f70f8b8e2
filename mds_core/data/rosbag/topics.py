"""Which topics of a bag hold the training images and their CameraInfo.

Image topic, when none is given: among the ``sensor_msgs/Image`` and ``CompressedImage``
topics with messages, ``T/compressed`` is the same stream as ``T`` (the raw one is used), topics
whose name contains ``depth`` are depth streams and topics whose name ends in ``_gt`` are ground
truth (``mds bag-from-video``'s ``motion_gt``); exactly one stream must remain.

CameraInfo topic, when none is given: ``<namespace>/camera_info`` next to the image topic
(``/cam/image_raw`` and ``/cam/image_raw/compressed`` -> ``/cam/camera_info``), else the only
CameraInfo topic of the bag, else none.
"""

from __future__ import annotations

from mds_core.data.rosbag.decode import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE, IMAGE_TYPES
from mds_core.data.rosbag.reader import TopicEntry
from mds_core.data.sequence_folder import DataError


def _listing(topics: dict[str, TopicEntry], types: tuple[str, ...]) -> str:
    names = [t.name for t in topics.values() if t.msgtype in types]
    return ", ".join(names) if names else "none"


def image_topic_candidates(topics: dict[str, TopicEntry]) -> list[str]:
    """Image streams that could be training images (module docstring)."""
    images = {t.name: t for t in topics.values() if t.msgtype in IMAGE_TYPES and t.count != 0}
    raw = {name for name, t in images.items() if t.msgtype == IMAGE_TYPE}

    def copy_of_raw(name: str, entry: TopicEntry) -> bool:
        return entry.msgtype == COMPRESSED_TYPE and name.endswith("/compressed") and name[: -len("/compressed")] in raw

    return [name for name, t in images.items()
            if not copy_of_raw(name, t) and "depth" not in name.lower() and not name.lower().endswith("_gt")]


def choose_image_topic(topics: dict[str, TopicEntry], requested: str, bag: str) -> str:
    """The image topic: ``requested`` (checked) or the one image stream of the bag."""
    if requested:
        entry = topics.get(requested)
        if entry is None or entry.msgtype not in IMAGE_TYPES:
            what = "is not in the bag" if entry is None else f"is a {entry.msgtype}, not an image topic"
            raise DataError(f"{bag}: image topic {requested} {what} (image topics: {_listing(topics, IMAGE_TYPES)})")
        return requested
    candidates = image_topic_candidates(topics)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"{bag}: no sensor_msgs/Image or CompressedImage topic with messages "
                        f"(image topics: {_listing(topics, IMAGE_TYPES)})")
    raise DataError(f"{bag}: {len(candidates)} image streams ({', '.join(candidates)}); "
                    f"choose one with --image-topic (data.bag.image_topic)")


def choose_camera_info_topic(topics: dict[str, TopicEntry], image_topic: str, requested: str, bag: str) -> str | None:
    """The CameraInfo topic for ``image_topic``: ``requested`` (checked), found, or None."""
    if requested:
        entry = topics.get(requested)
        if entry is None or entry.msgtype != CAMERA_INFO_TYPE:
            what = "is not in the bag" if entry is None else f"is a {entry.msgtype}"
            raise DataError(f"{bag}: camera info topic {requested} {what} "
                            f"(CameraInfo topics: {_listing(topics, (CAMERA_INFO_TYPE,))})")
        return requested
    stream = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    sibling = stream.rsplit("/", 1)[0] + "/camera_info"
    infos = [t.name for t in topics.values() if t.msgtype == CAMERA_INFO_TYPE]
    if sibling in infos:
        return sibling
    if len(infos) == 1:
        return infos[0]
    if not infos:
        return None
    raise DataError(f"{bag}: {len(infos)} CameraInfo topics ({', '.join(infos)}) and none next to {image_topic}; "
                    f"choose one with --camera-info-topic (data.bag.camera_info_topic)")
