"""Colorize a video: PyAV decode -> engine -> PyAV encode, streamed.

The only package that imports ``av``.  Only colour comes from the network:
every output frame has its input's size (one edge-replicated pixel is added
to an odd side when the pixel format subsamples chroma, see
:class:`VideoOptions`), lightness and timestamps.  Audio and subtitle packets
are copied byte for byte; the output is written under a temporary name and
renamed into place at the end, so a failed or interrupted run leaves nothing
at the output path.

One module per step, in the order a frame meets them:

    containers   the input opened, the output staged, the other streams copied
    lightness    a decoded frame's L* (a table of its luma codes when gray) and its network input
    stabilizer   scene cuts and the temporal smoothing of a*b*
    yuv420       a gray frame composed straight into the encoder's 4:2:0 planes
    codecs       which encoder ("auto": NVENC when it opens, else libx264) and its options
    pipeline     the four threaded stages: one pass over a video or a part of it
    segments     a video cut into parts at keyframes, their work folder, the parts joined
    job          :func:`colorize_video`: one pass, or a long video a part at a time (resumable)
    options      :class:`VideoOptions` and the default output name
    clips        test and benchmark helpers: a generated clip, the codec floor
"""

from streamcolor.video.clips import codec_floor, make_clip, reencode, video_size
from streamcolor.video.codecs import (AUTO_BY_CONTAINER, DEFAULT_CODEC, HARDWARE_CODECS, check_codec,
                                      check_container, check_pix_fmt, codec_options, pick_codec, plain_encoder)
from streamcolor.video.options import (OUTPUT_SUFFIX, VideoOptions, default_output, output_path, output_replace,
                                       remember_output, remembers)
from streamcolor.video.job import colorize_video
from streamcolor.video.segments import (PartsFolder, Segment, check_joinable, colorize_segment, join_parts,
                                        join_segments, keyframes_in_order, part_job, plan_segments, refuse_if_written,
                                        segment_folder, segment_folder_path, video_keyframes)
from streamcolor.video.stabilizer import ChromaStabilizer, histogram_distance, l_histogram

__all__ = ["AUTO_BY_CONTAINER", "ChromaStabilizer", "DEFAULT_CODEC", "HARDWARE_CODECS", "OUTPUT_SUFFIX", "PartsFolder",
           "Segment", "VideoOptions", "check_codec", "check_container", "check_joinable", "check_pix_fmt", "codec_floor",
           "codec_options", "colorize_segment", "join_parts", "keyframes_in_order", "part_job",
           "colorize_video", "default_output", "histogram_distance", "join_segments", "l_histogram", "make_clip",
           "output_path", "output_replace", "pick_codec", "plain_encoder", "plan_segments", "reencode",
           "refuse_if_written", "remember_output", "remembers", "segment_folder", "segment_folder_path", "video_keyframes",
           "video_size"]
