"""The operator console: Gradio widgets over `DetectionService`. One small builder per tab; callbacks only
translate widgets into service calls and results into widgets (`app/views.py` renders them)."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from . import views
from .engine import ModelDefaults
from .errors import GloveSafetyError, ServiceError
from .pipeline import DetectionRun
from .schema import DetectionRow, EventRow, local_zone
from .service import NO_WEIGHTS_HELP, DetectionService, LiveSession, ModelInfo, RunOptions

log = logging.getLogger(__name__)
IMAGE_SIZES = [320, 416, 480, 640, 800, 960]
STREAM_LIMIT_S = 3600  # one browser stream event; the live run itself is kept by the service's LiveSession
# The webcam sends a frame every STREAM_EVERY_S at most, and only once the previous result is back: capture follows
# what the server can process (the page shows the rate achieved) instead of a fixed 5 fps.
STREAM_EVERY_S = 0.05
NO_POLICY = "none"
MIN_CONF = 0.001  # a typed -1 or 0 would draw every box the model can produce
REFUSAL_TOAST_S = 20
MONITOR_REFRESH_S = 1.0  # the Monitors tab and the alarm bar are read again from the records this often


@dataclass
class Controls:
    """The run controls shared by the image, video and live tabs."""

    model: gr.Dropdown
    policy: gr.Dropdown
    imgsz: gr.Dropdown
    conf: gr.Slider
    iou: gr.Slider
    track: gr.Checkbox
    classes: gr.CheckboxGroup
    zone: gr.Textbox
    augment: gr.Checkbox

    def inputs(self) -> list[gr.components.Component]:
        return [self.model, self.conf, self.iou, self.classes, self.imgsz, self.track, self.policy, self.zone,
                self.augment]  # fmt: skip


THEME = gr.themes.Default(
    font=(gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "ui-sans-serif", "system-ui", "sans-serif")
)
"""Gradio's default look with its bold text in the complete Bold face it ships: its SemiBold file (the default's
600) holds a few dozen glyphs, A and B alone of the letters, so bold words mixed two fonts ("VIOLaTION")."""

LAUNCH_OPTIONS = {"css": views.CSS, "head": views.PAGE_JS, "theme": THEME}
"""What `Blocks.launch` must be given besides the server settings: the page's look, style and script."""


def build_console(
    service: DetectionService, default_conf: float | None = None, default_policy: str | None = None
) -> gr.Blocks:
    """The console as a Gradio app (launch it with `webui.py`, with `LAUNCH_OPTIONS`); `default_conf` overrides
    every model's own; `default_policy` (a shipped policy's name: the machine's) is selected on every page load and
    model change where it fits the model, so an operator does not start without it."""
    # Gradio's cache (uploads, generated files) lives under .runtime/gradio; hourly, files a day old go.
    with gr.Blocks(title="Glove safety console", delete_cache=(3600, 86400)) as ui:
        gr.Markdown("# Glove / hand safety console")
        default = service.default_model()
        info = service.model_info(default) if default else None  # the page opens ready, before `load` refreshes
        notice = gr.Markdown(views.markdown_text(info.notice) if info else _none_loaded(service)[-1], elem_id="notice")
        # Outside the tabs, so that a camera monitor's alarm shows (and sounds) whichever tab is open.
        alarms, tick = gr.HTML(elem_id="monitor-alarms"), gr.Timer(MONITOR_REFRESH_S)
        controls = _controls(service, info, default_conf, default_policy)
        with gr.Tabs():
            with gr.Tab("Image", id="image"):
                _image_tab(service, controls)
            with gr.Tab("Video", id="video"):
                _video_tab(service, controls)
            with gr.Tab("Live camera", id="live"):
                _live_tab(service, controls)
            with gr.Tab("Monitors", id="monitors"):
                _monitors_tab(service, tick, alarms)
            with gr.Tab("History & Export", id="history") as history:
                _history_tab(service, history)
            with gr.Tab("Model", id="model-tab"):
                upload, model_info = _model_tab(service, info)

        def model_changed(path: str | None):
            """A model was chosen (or the page loaded): its classes, fitting policies and its own defaults."""
            if not path:
                return _none_loaded(service)
            info = service.model_info(path)
            d = info.defaults
            return (
                gr.update(choices=views.model_choices(service), value=path),
                gr.update(**_policy_list(service.policies(path), default_policy)),
                gr.update(value=d.imgsz, choices=sorted({*IMAGE_SIZES, d.imgsz})),
                gr.update(value=d.conf if default_conf is None else default_conf),
                gr.update(value=d.iou),
                gr.update(choices=list(info.names.values()), value=[]),
                views.markdown_text(info.notice),
                views.markdown_text(info.describe()),
            )

        outputs = [controls.model, controls.policy, controls.imgsz, controls.conf, controls.iou, controls.classes,
                   notice, model_info]  # fmt: skip
        controls.model.input(_answer(model_changed, len(outputs)), [controls.model], outputs)

        def added(path: str | None):
            """An upload is kept, listed and selected with its own defaults; a refused one leaves the box, so it
            does not look taken."""
            if not path:
                return (gr.skip(),) * (len(outputs) + 1)
            try:
                info = service.add_upload(path)
                shown = model_changed(str(info.path))
                # said, not only shown: the kept file's name (content hash added) is what the model list offers
                gr.Info(f"Model added and selected: {info.short_name}", duration=REFUSAL_TOAST_S)
                return *shown, gr.skip()
            except GloveSafetyError as e:
                _refused(added, e)
                return *(gr.skip(),) * len(outputs), None

        upload.upload(added, [upload], [*outputs, upload])
        # On every page load the lists are read again: uploads made since the server started are offered.
        ui.load(_answer(lambda: model_changed(str(service.default_model() or "")), len(outputs)), None, outputs)
    return ui


def _policy_list(fitting: list[str], default_policy: str | None) -> dict:
    """The policy list for a model: those that fit it, the machine's own selected where it is one of them."""
    value = default_policy if default_policy in fitting else NO_POLICY
    return {"choices": views.policy_choices(NO_POLICY, fitting), "value": value}


def _controls(
    service: DetectionService, info: ModelInfo | None, default_conf: float | None, default_policy: str | None
) -> Controls:
    d = info.defaults if info else ModelDefaults()
    with gr.Row():
        model = gr.Dropdown(views.model_choices(service), value=str(info.path) if info else None, label="Model",
                            scale=3, elem_id="model", allow_custom_value=False)  # fmt: skip
        policy = gr.Dropdown(label="Safety policy", scale=2, elem_id="policy",
                             **_policy_list(service.policies(info.path) if info else [], default_policy))  # fmt: skip
        imgsz = gr.Dropdown(sorted({*IMAGE_SIZES, d.imgsz}), value=d.imgsz, label="Image size", scale=1,
                            elem_id="imgsz")  # fmt: skip
    with gr.Row():
        conf = gr.Slider(MIN_CONF, 1.0, value=d.conf if default_conf is None else default_conf, step=0.001,
                         label="Confidence", elem_id="conf")  # fmt: skip
        iou = gr.Slider(0.05, 1.0, value=d.iou, step=0.05, label="IoU (NMS)", elem_id="iou")
        track = gr.Checkbox(False, label="Track objects (unique counts in videos)")
        augment = gr.Checkbox(RunOptions.augment_photos, label="Thorough on photos (test-time augmentation, ~5x "
                              "slower; never on video)", elem_id="augment")  # fmt: skip
        gr.Checkbox(False, label="Mute the alarm", elem_id="alarm-mute")  # read by views.PAGE_JS in the page
    with gr.Row():
        classes = gr.CheckboxGroup(list(info.names.values()) if info else [], scale=3,
                                   label="Only these classes (none ticked = all)")  # fmt: skip
        zone = gr.Textbox(label="Danger zone (x,y pairs in 0..1; empty = policy's own; click a result to add)",
                          placeholder=views.zone_placeholder(None if policy.value == NO_POLICY else policy.value),
                          scale=2, elem_id="zone")  # fmt: skip
    policy.change(lambda p: gr.update(placeholder=views.zone_placeholder(None if p == NO_POLICY else p)), policy, zone)
    # A typed value outside the range is put back inside it (the run clamps it the same way). Unprocessed: Gradio's
    # slider refuses such a value with an error in its place before any callback could put it back.
    conf.input(lambda v: views.clamp(v, MIN_CONF, 1.0), conf, conf, preprocess=False)
    iou.input(lambda v: views.clamp(v, 0.05, 1.0), iou, iou, preprocess=False)
    return Controls(model, policy, imgsz, conf, iou, track, classes, zone, augment)


def _image_tab(service: DetectionService, controls: Controls) -> None:
    with gr.Row():
        # A file, not gr.Image: Gradio's own decoding of a corrupt upload fails with a developer's message and red
        # marks on every output; this way the service reads the file and answers in one line.
        image_in = gr.File(label="Image", file_types=["image"], elem_id="image-in")
        image_out = gr.Image(label="Result (click to add a zone point)", elem_id="image-out", interactive=False)
    run_btn = gr.Button("Detect", variant="primary", elem_id="image-run")
    results = _result_widgets("image")

    def run_image(path, *ctl):
        if not path:
            raise ServiceError("Choose an image first.")
        run = service.detect_file(path, _options(*ctl), name=Path(path).name)  # Gradio keeps the upload's name
        summary = run.run()
        image = views.rgb(cv2.imread(str(summary.images[0]))) if summary.images else None
        return image, *views.result_values(service, summary)

    cleared = (None, *views.no_result())  # a refused or a new image: the last one's results are not its results
    run_btn.click(_answer(run_image, 7, clear=cleared), [image_in, *controls.inputs()], [image_out, *results])
    image_in.change(lambda: cleared, None, [image_out, *results], queue=False, show_progress="hidden")
    image_out.select(_add_zone_point, [controls.zone, image_out], [controls.zone])


def _video_tab(service: DetectionService, controls: Controls) -> None:
    with gr.Row():
        video_in = gr.File(label="Video", file_types=["video"], elem_id="video-in")
        video_out = gr.Video(label="Annotated video", elem_id="video-out", interactive=False)
    stride = gr.Slider(1, 30, value=1, step=1, label="Process every n-th frame", elem_id="stride")
    run_btn = gr.Button("Detect", variant="primary", elem_id="video-run")
    results = _result_widgets("video")

    def run_video(path, n, *ctl, progress=gr.Progress()):  # noqa: B008 (Gradio's own idiom)
        if not path:
            raise ServiceError("Choose a video first.")
        run = service.detect_file(path, _options(*ctl), stride=int(n), name=Path(path).name)
        for partial in _progress(run, progress):
            yield None, *partial
        yield str(run.summary.video) if run.summary.video else None, *views.result_values(service, run.summary)

    cleared = (None, *views.no_result())
    outputs = [video_out, *results]
    # The video cannot be swapped while it runs: its results would come back under the new one. Unlocked after
    # the run whatever its end (`then`, not `success`).
    locked = run_btn.click(lambda: gr.update(interactive=False), None, video_in, queue=False)
    running = locked.then(_answer(run_video, 7, clear=cleared), [video_in, stride, *controls.inputs()], outputs)
    running.then(lambda: gr.update(interactive=True), None, video_in, queue=False)
    video_in.change(lambda: cleared, None, outputs, queue=False, show_progress="hidden")


def _progress(run: DetectionRun, progress: gr.Progress):
    """Partial results every 2 s while a video runs: the verdict and the table so far (the rest unchanged)."""
    rows, last = [], 0.0
    for update in run:
        rows += update.rows
        total = update.total or 0
        progress((update.done, total) if total else None, desc="Processing video", unit="frames")
        if time.monotonic() - last > 2 and update.frame is not None:
            last = time.monotonic()
            yield views.run_banner(run.summary), views.detections_table(rows), \
                *([gr.skip()] * 4)  # fmt: skip


def _live_tab(service: DetectionService, controls: Controls) -> None:
    # One live session per browser session, made when the page loads (not by the first frames, which arrive
    # concurrently and would each start a run of their own).
    session = gr.State(lambda: service.live(), delete_callback=lambda s: s is not None and s.stop())
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, label="Camera", elem_id="cam",
                       webcam_options=gr.WebcamOptions(mirror=False))  # fmt: skip
        # JPEG: Gradio's default WebP took 35-65 ms to encode a 640x640 result here, about one inference (JPEG 2.5 ms)
        cam_out = gr.Image(label="Live result", elem_id="cam-out", interactive=False, format="jpeg")
    status = gr.HTML(elem_id="live-status")
    counts = gr.Dataframe(views.counts_table(None), label="This frame", elem_id="live-counts")
    info = gr.Markdown(elem_id="live-info")
    stop_btn = gr.Button("Stop and save the live run", elem_id="live-stop")

    def stream_frame(frame, state: LiveSession, *ctl):
        if frame is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
        with state.drawing():  # a Stop pressed meanwhile answers after this frame's result, never before it
            update = state.process(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), _options(*ctl))
            if update is None or state.stopped:  # stopped: the saved message stays
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
            banner = views.banner(update.status, update.status is not None, update.open_event)
            return (views.rgb(update.frame.annotated), banner,
                    views.counts_table(update.frame), views.live_info(state), state)  # fmt: skip

    def stop_live(state: LiveSession):
        # a run its camera's pause already saved is the one to name: Stop pressed after the camera's own stop
        saved = state.stop() or (state.saved[-1] if state.saved else None)
        # the last frame's picture and counts go with its verdict: a stopped camera is not watching anything
        return state, views.saved_live(saved), views.camera_stopped(), None, views.counts_table(None)

    # No progress overlay: it would fade the verdict for as long as the camera streams
    cam.stream(_answer(stream_frame, 5), [cam, session, *controls.inputs()], [cam_out, status, counts, info, session],
               time_limit=STREAM_LIMIT_S, concurrency_limit=4, stream_every=STREAM_EVERY_S,
               show_progress="hidden")  # fmt: skip
    stop_btn.click(_answer(stop_live, 5), [session], [session, info, status, cam_out, counts])
    stop_btn.click(None, js=views.STOP_CAMERA_JS)  # the webcam stops too: "Camera stopped" is then what it is


def _history_tab(service: DetectionService, tab: gr.Tab) -> None:
    with gr.Row():
        start = gr.Textbox(label=f"From (YYYY-MM-DD, {local_zone()})", elem_id="hist-start")
        end = gr.Textbox(label="Until (exclusive)", elem_id="hist-end")
        source = gr.Textbox(label="Source (as stored, or its file name; optional)", elem_id="hist-source")
    with gr.Row():
        show_btn = gr.Button("Show runs", elem_id="hist-run")
        export_btn = gr.Button("Export Excel", elem_id="hist-export")
    runs = gr.Dataframe(views.runs_table([]), label="Runs", elem_id="hist-table")
    workbook = gr.File(label="Workbook", elem_id="hist-file", height=80)

    def show_runs(start: str, end: str, source: str):
        listed = service.history(start, end, source)
        table = views.runs_table(listed, service.run_counts(listed))
        label = views.runs_label(listed, bool(start or end), source)
        return gr.update(value=table, label=label), None  # another listing's workbook goes

    # refused filters take the last listing away too: it is not of the filters now typed
    unlisted = (gr.update(value=views.runs_table([]), label=views.NOT_LISTED), None)
    show_btn.click(_answer(show_runs, 2, clear=unlisted), [start, end, source], [runs, workbook])
    tab.select(_answer(show_runs, 2, clear=unlisted), [start, end, source], [runs, workbook])  # opened: listed at once
    # a refused export takes the last workbook away: it is not of the filters now typed
    export = _answer(lambda a, b, s: str(service.workbook(None, a, b, s)), 1, clear=(None,))
    export_btn.click(export, [start, end, source], [workbook])


def _monitors_tab(service: DetectionService, tick: gr.Timer, alarms: gr.HTML) -> None:
    """Every camera monitor on these records (any process), redrawn from its status row each tick: the model never
    runs per viewer, the latest frame is the monitor's own JPEG served as a file. Today's events with their snapshot,
    clip and acknowledgement."""
    served = service.served_dirs  # webui.py's allowed_paths: the files Gradio serves
    cards = gr.HTML(elem_id="monitor-cards")  # the first tick fills it (the help text where no monitor ran)
    events = gr.Dataframe(views.monitor_events_table([], _now()), label="Today's events (select one)",
                          elem_id="monitor-events", interactive=False, max_height=320)  # fmt: skip
    shown = gr.State(None)  # the events as this page's table last drew them: it is redrawn only when they change
    # The id of the event whose note, snapshot and clip are shown: what Acknowledge acts on. A component, not a
    # gr.State, so that a click sends what the page showed when it was clicked.
    loaded = gr.Textbox(visible="hidden", elem_id="monitor-loaded-event")
    with gr.Row():
        # A text box, not gr.Number: that one shows 0 when empty, and Enter in it is taken by the page's script.
        event = gr.Textbox(label="Event", placeholder="select a row, or type its number and press Enter",
                           elem_id="monitor-event", scale=1, max_lines=1)  # fmt: skip
        who = gr.Textbox(label="Your name", placeholder="name or initials", elem_id="monitor-ack-name", scale=2)
        ack_btn = gr.Button("Acknowledge the event shown", variant="primary", elem_id="monitor-ack", scale=1)
    note = gr.HTML(elem_id="monitor-event-note")
    with gr.Row():
        snapshot = gr.Image(label="Snapshot", type="filepath", interactive=False, elem_id="monitor-snapshot")
        clip = gr.Video(label="Clip", interactive=False, elem_id="monitor-clip")

    def refresh(drawn: tuple | None):
        now = _now()
        try:
            monitors = service.monitors(now)
        except GloveSafetyError as e:  # records unreachable: said in place of the cards, not as a toast a second
            return gr.skip(), f'<div class="monitor-message">{html.escape(str(e))}</div>', gr.skip(), drawn
        key = views.monitor_events_key(monitors)
        table = views.monitor_events_table(monitors, now) if key != drawn else gr.skip()
        return views.monitor_alarms(monitors, now), views.monitor_cards(monitors, now, served), table, key

    def note_of(event_id: int, feedback: str = "") -> tuple:
        """The event's media and the note naming it (id, monitor, time)."""
        media = service.event_media(event_id)
        run = service.store.run(media.event.run_id)
        return media, views.event_media_note(media, _now(), run.monitor if run else None, feedback)

    def show_event(event_id):
        media, text = note_of(_event_id(event_id))
        return str(media.event.id), str(media.event.id), _path(media.snapshot), _path(media.clip), text

    def select_event(evt: gr.SelectData):
        return show_event(evt.row_value[0]) if evt.row_value else (gr.skip(),) * 5  # a header: nothing chosen

    def typed_event(typed, current, again: bool = False):
        """The box was left (`again`: Enter was pressed in it): the typed event is shown, unless it is already or
        the box was left empty. One that cannot be shown is said, and the box goes back to the event still shown,
        so the box and the note never name two events."""
        if not again and (not (typed or "").strip() or str(typed).strip() == str(current)):
            return (gr.skip(),) * 5
        try:
            return show_event(typed)
        except GloveSafetyError as e:
            _refused(typed_event, e)
            return (current or "", *(gr.skip(),) * 4)

    def acknowledge(current: str | None, typed: str | None, name: str | None):
        if (typed or "").strip() and typed.strip() != (current or ""):  # typed but not shown: show it first
            shown_now = show_event(typed)
            gr.Warning(f"Event {shown_now[1]} is shown now, not acknowledged: check it, then press Acknowledge again.")
            return *shown_now, gr.skip(), gr.skip()
        current = _event_id(current)
        feedback = views.acknowledged_already(service.acknowledge(current, name or ""), name or "", _now())
        if feedback:
            gr.Warning(feedback)
        _, _, table, drawn = refresh(None)  # the table shows who and when at once
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), note_of(current, feedback)[1], table, drawn

    tick.tick(refresh, [shown], [alarms, cards, events, shown], show_progress="hidden", concurrency_limit=None)
    media_outputs = [event, loaded, snapshot, clip, note]
    events.select(_answer(select_event, 5), None, media_outputs)
    event.submit(_answer(functools.partial(typed_event, again=True), 5), [event, loaded], media_outputs)
    event.blur(_answer(typed_event, 5), [event, loaded], media_outputs)
    ack_btn.click(_answer(acknowledge, 7), [loaded, event, who], [*media_outputs, events, shown])


def _model_tab(service: DetectionService, info: ModelInfo | None) -> tuple[gr.File, gr.Markdown]:
    upload = gr.File(label="Upload a trained best.pt (or .onnx export)", file_types=[".pt", ".onnx"],
                     elem_id="upload-pt")  # fmt: skip
    described = gr.Markdown(views.markdown_text(info.describe()) if info else "", elem_id="model-info")
    gr.Markdown(f"Models are listed from `{service.weights_dir}` and earlier uploads. How well a model finds gloves "
                "and bare hands in real scenes is measured in its model card (`models/README.md` for the shipped "
                "ones, which still miss many): try it on your own camera's pictures before a machine relies on its "
                "verdicts.")  # fmt: skip
    return upload, described


def _result_widgets(prefix: str) -> list[gr.components.Component]:
    """Verdict banner, detections table, counts chart, events table, settings / where-saved note, workbook."""
    status = gr.HTML(elem_id=f"{prefix}-status")
    table = gr.Dataframe(views.table([], DetectionRow), label="Detections", elem_id=f"{prefix}-table", max_height=400)
    with gr.Row():
        chart = gr.HTML(elem_id=f"{prefix}-chart", label="Detections per class")
        events = gr.Dataframe(views.table([], EventRow), label="Violation events", elem_id=f"{prefix}-events")
    saved = gr.Markdown(elem_id=f"{prefix}-saved")
    excel = gr.File(label="Excel workbook of this run", elem_id=f"{prefix}-excel", height=80)
    return [status, table, chart, events, saved, excel]


def _none_loaded(service: DetectionService) -> tuple:
    notice = "**No model loaded.** " + NO_WEIGHTS_HELP.replace("\n", "  \n")
    return (gr.update(choices=views.model_choices(service), value=None), gr.update(), gr.update(), gr.update(),
            gr.update(), gr.update(choices=[], value=[]), notice, notice)  # fmt: skip


def _answer(callback: Callable, outputs: int, clear: Sequence | None = None) -> Callable:
    """`callback` for Gradio: a user's error (`GloveSafetyError`) becomes a warning toast and leaves the `outputs`
    as they were (or sets them to `clear`, their empty values: a run's results must not stay up under the input
    that was refused), without the red "Error" marks Gradio puts on outputs of a failed event; anything else is a
    bug and stays one."""
    values = tuple(clear) if clear is not None else (gr.skip(),) * outputs
    skip = values if outputs > 1 else values[0]
    if inspect.isgeneratorfunction(callback):

        @functools.wraps(callback)
        def stream(*args, **kwargs):
            try:
                yield from callback(*args, **kwargs)
            except GloveSafetyError as e:
                _refused(callback, e)
                yield skip

        return stream

    @functools.wraps(callback)
    def call(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except GloveSafetyError as e:
            _refused(callback, e)
            return skip

    return call


def _refused(callback: Callable, error: GloveSafetyError) -> None:
    """Tell the user (a toast) and the log (one line; the traceback only at debug level) why a request failed."""
    # Long enough to read a line twice; kept until closed they piled up over the controls
    gr.Warning(str(error), duration=REFUSAL_TOAST_S)
    log.info("%s refused: %s", getattr(callback, "__name__", "request"), error)
    log.debug("details", exc_info=error)


def _options(model, conf, iou, classes, imgsz, track, policy, zone, augment) -> RunOptions:
    return RunOptions(
        weights=model, conf=views.clamp(conf, MIN_CONF, 1.0), iou=views.clamp(iou, 0.05, 1.0),
        classes=tuple(classes or ()), imgsz=int(imgsz), track=bool(track),
        policy=None if policy in (None, NO_POLICY) else policy, zone=zone or None, augment_photos=bool(augment),
    )  # fmt: skip


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _event_id(value: object) -> int:
    """The event chosen in the Monitors tab (a table row's id, or typed)."""
    if value is None or not str(value).strip():
        raise ServiceError("Select an event in the table first (or type its number and press Enter).")
    try:
        number = float(str(value).strip().lstrip("#"))
    except ValueError:
        number = 0.0
    event_id = int(number) if number.is_integer() else 0
    if event_id <= 0:
        raise ServiceError(f"Type an event's number (as in the table's Event column), not {str(value).strip()!r}.")
    return event_id


def _path(path) -> str | None:
    return None if path is None else str(path)


def _add_zone_point(text: str, evt: gr.SelectData, image) -> str:
    if image is None or evt is None:
        return text
    h, w = np.asarray(image).shape[:2]
    x, y = evt.index
    return f"{text} {x / w:.3f},{y / h:.3f}".strip()
