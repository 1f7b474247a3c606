"""`streamcolor serve`: a local web page and HTTP API (needs streamcolor[serve])."""

from __future__ import annotations

import logging

import click

from streamcolor.commands.common import EXIT_FATAL, ByteSize, FiniteRange, common_options, engine_options, load
from streamcolor.memory import DEFAULT_MEMORY_BUDGET

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. 0.0.0.0 (or ::) opens the server to other machines; it has "
                   "no authentication, so only do that on a network you trust.")
@click.option("-p", "--port", type=click.IntRange(0, 65535), default=7070, show_default=True,
              help="TCP port (0: any free port; the log line says which).")
@click.option("-b", "--max-batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Most images per engine call when requests arrive together (1: no batching).")
@click.option("--max-wait-ms", type=FiniteRange(min=0), default=5.0, show_default=True,
              help="How long a request waits for others to share its engine call.")
@click.option("--max-upload", type=ByteSize(), default="64M", show_default=True,
              help="Refuse uploads bigger than this (413), videos included.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True,
              help="Refuse images with more pixels (decompression bombs; 400).")
@click.option("--max-pending", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests colorized at once; more get 503 and Retry-After.")
@click.option("--memory-budget", type=ByteSize(), default=f"{DEFAULT_MEMORY_BUDGET >> 20}M", show_default=True,
              help="Working memory for images colorized at once, estimated from each upload's header before "
                   "decoding (about 16 bytes a pixel): big images wait for each other; one bigger runs alone.")
@click.option("--upload-timeout", type=FiniteRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds an upload may send nothing (or, past them, average under 16 KiB/s) before it "
                   "is dropped with 408; seconds a client may take to read 64 KiB of its answer, or to send "
                   "a request's headers, or stay idle: a stalled client does not hold a --max-pending slot, "
                   "memory or a connection.")
@click.option("-j", "--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Threads that decode, compose and encode (0: max batch + CPU cores).")
@click.option("--video/--no-video", default=True, show_default=True,
              help="Accept short videos (one at a time; bounded by --max-upload and --max-video-frames).")
@click.option("--max-video-frames", type=click.IntRange(min=1), default=18_000, show_default=True,
              help="Refuse videos with more frames (413; 18,000 is 10 minutes at 30 fps): a small upload can "
                   "hold a long film, and videos run one at a time.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser once listening.")
@engine_options
@click.pass_context
@common_options
def command(ctx, host, port, max_batch, max_wait_ms, max_upload, max_pixels, max_pending, memory_budget,
            upload_timeout, workers, video, max_video_frames, open_browser, model, backend, render_size, saturation):
    """Serve a web page and an HTTP API that colorize uploaded photos and videos.

    The page (at the printed URL) takes photos and short videos by drag and
    drop, shows each before and after with a slider, and offers the result
    for download.  The API returns the colorized image for a posted one, in
    the same format and size.  One engine is loaded; requests that arrive
    together share engine calls (dynamic batching).  Ctrl-C or SIGTERM stops
    it after the requests in progress finish.

    \b
    API:
      POST /api/colorize   image or short video as form field "file" or as
                           the raw body -> the image (a video: an MP4, or
                           MKV where MP4 cannot hold its streams);
                           ?render_size=N &saturation=X (0-4)
                           &format=same|png|jpg|webp|tiff|bmp &quality=Q
      GET  /api/health     status, engine, limits
      GET  /api/models     the loaded model and the shipped ones
      GET  /api/stats      engine calls, batch sizes, responses, memory
    Errors are JSON {"error": reason, "status": N}: 400 bad input or
    parameter (an image over --max-pixels included), 408 a stalled upload,
    413 too large (--max-upload, --max-video-frames), 415 videos turned off, 422 a result
    the asked format cannot hold, 503 busy (--max-pending; Retry-After) or
    shutting down.

    \b
    Examples:
      streamcolor serve                          # http://127.0.0.1:7070
      streamcolor serve --port 8000 --open -r 384
      streamcolor serve --max-batch 1            # no batching
      curl -F file=@old.jpg http://127.0.0.1:7070/api/colorize -o colour.jpg
      curl --data-binary @scan.png 'http://127.0.0.1:7070/api/colorize?format=jpg' -o colour.jpg
    """
    try:
        from streamcolor import serve
    except ImportError as exc:  # the extra is not installed: the server cannot start
        error = click.ClickException(str(exc))
        error.exit_code = EXIT_FATAL
        raise error from exc
    from streamcolor.batching import BatchingOptions
    from streamcolor.colorize import model_options

    root = ctx.find_root().params
    if not root.get("quiet") and logging.getLogger("streamcolor.serve").getEffectiveLevel() > logging.INFO:
        logging.getLogger("streamcolor.serve").setLevel(logging.INFO)  # a server says where it listens
    try:
        options = serve.ServeOptions(host=host, port=port, batching=BatchingOptions(max_batch, max_wait_ms),
                                     max_upload=max_upload, max_pixels=max_pixels, max_pending=max_pending,
                                     memory_budget=memory_budget, upload_timeout=upload_timeout,
                                     workers=workers, video=video, max_video_frames=max_video_frames)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    engine = load(model, backend)
    colour = model_options(engine, render_size=render_size, saturation=saturation)

    def ready(url: str) -> None:
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        serve.run(engine, options, colour=colour, on_ready=ready)
    except KeyboardInterrupt:  # a second Ctrl-C during the graceful shutdown
        raise click.exceptions.Abort("stopped at once; requests still in progress got no answer") from None
    except OSError as exc:  # the port taken, the address not this machine's: the server could not start
        error = click.ClickException(str(exc))
        error.exit_code = EXIT_FATAL
        raise error from exc
    finally:
        engine.close()
