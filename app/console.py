"""The operator console: Gradio widgets over `DetectionService`. Callbacks only translate; the service decides."""

from __future__ import annotations

import html
import time

import cv2
import gradio as gr
import numpy as np
import pandas as pd

from .errors import ServiceError
from .pipeline import DetectionRun, RunSummary
from .policy import FrameStatus, SafetyEvent
from .records import DetectionRecord
from .results import FrameResult
from .service import NO_WEIGHTS_HELP, DetectionService, LiveSession, RunOptions

IMAGE_SIZES = [320, 416, 480, 640, 800, 960]
LIVE_TIME_LIMIT_S = 300  # per stream: one user cannot hold the queue for ever
LIVE_GAP_S = 5.0  # a pause longer than this starts a new live run
NO_POLICY = "none"
DETECTION_COLUMNS = ["item", "frame", "time (s)", "class", "confidence", "x1", "y1", "x2", "y2", "track", "mask px"]
EVENT_COLUMNS = ["event", "reason", "class", "start frame", "end frame", "start (s)", "end (s)", "peak", "status"]


def build_console(service: DetectionService, default_conf: float = 0.25) -> gr.Blocks:
    """The console as a Gradio app (launch it with `webui.py`)."""
    default = service.default_model()
    models = [str(p) for p in service.available_models()]

    # Gradio's cache (uploads, generated files) lives under .runtime/gradio; hourly, files a day old go.
    with gr.Blocks(title="Glove safety console", delete_cache=(3600, 86400)) as ui:
        gr.Markdown("# Glove / hand safety console")
        notice = gr.Markdown(_no_model_notice() if default is None else "", elem_id="notice")
        with gr.Row():
            model = gr.Dropdown(models, value=str(default) if default else None, label="Model", scale=3,
                                elem_id="model", allow_custom_value=False)  # fmt: skip
            policy = gr.Dropdown([NO_POLICY, *service.policies()], value=NO_POLICY, label="Safety policy", scale=2)
            imgsz = gr.Dropdown(IMAGE_SIZES, value=640, label="Image size", scale=1)
        with gr.Row():
            conf = gr.Slider(0.0, 1.0, value=default_conf, step=0.001, label="Confidence", elem_id="conf")
            iou = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="IoU (NMS)")
            track = gr.Checkbox(False, label="Track objects (unique counts in videos)")
        with gr.Row():
            classes = gr.CheckboxGroup([], label="Only these classes (none ticked = all)", scale=3)
            zone = gr.Textbox(label="Danger zone (x,y pairs in 0..1; empty = policy's own; click an image to add)",
                              placeholder="0.3,0.15 0.7,0.15 0.7,0.95 0.3,0.95", scale=2, elem_id="zone")  # fmt: skip
        controls = [model, conf, iou, classes, imgsz, track, policy, zone]

        with gr.Tabs():
            with gr.Tab("Image", id="image"):
                with gr.Row():
                    image_in = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"],
                                        elem_id="image-in")  # fmt: skip
                    image_out = gr.Image(label="Result (click to add a zone point)", elem_id="image-out",
                                         interactive=False)  # fmt: skip
                image_btn = gr.Button("Detect", variant="primary", elem_id="image-run")
                image_res = _result_widgets("image")
            with gr.Tab("Video", id="video"):
                with gr.Row():
                    video_in = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
                    video_out = gr.Video(label="Annotated video", elem_id="video-out", interactive=False)
                stride = gr.Slider(1, 30, value=1, step=1, label="Process every n-th frame", elem_id="stride")
                video_btn = gr.Button("Detect", variant="primary", elem_id="video-run")
                video_res = _result_widgets("video")
            with gr.Tab("Live camera", id="live"):
                live_state = gr.State(None, delete_callback=_finish_live)
                with gr.Row():
                    cam = gr.Image(sources=["webcam"], streaming=True, label="Camera", elem_id="cam")
                    cam_out = gr.Image(label="Live result", elem_id="cam-out", interactive=False)
                live_status = gr.HTML(elem_id="live-status")
                live_counts = gr.Dataframe(headers=["class", "count"], label="This frame", elem_id="live-counts")
                live_info = gr.Markdown(elem_id="live-info")
                stop_btn = gr.Button("Stop and save the live run", elem_id="live-stop")
            with gr.Tab("History & Export", id="history"):
                with gr.Row():
                    start = gr.Textbox(label="From (YYYY-MM-DD, UTC)", elem_id="hist-start")
                    end = gr.Textbox(label="Until (exclusive)", elem_id="hist-end")
                    source = gr.Textbox(label="Source (exact, optional)")
                with gr.Row():
                    hist_btn = gr.Button("Show runs", elem_id="hist-run")
                    hist_xlsx_btn = gr.Button("Export Excel", elem_id="hist-export")
                runs_table = gr.Dataframe(label="Runs", elem_id="hist-table")
                hist_file = gr.File(label="Workbook", elem_id="hist-file")
            with gr.Tab("Model", id="model-tab"):
                upload = gr.File(label="Upload a trained best.pt (or .onnx export)", file_types=[".pt", ".onnx"],
                                 elem_id="upload-pt")  # fmt: skip
                model_info = gr.Markdown(elem_id="model-info")
                gr.Markdown(f"Models are listed from `{service.weights_dir}` and earlier uploads.")

        def run_image(path, *ctl):
            if not path:
                raise gr.Error("Choose an image first.")
            run = _call(service.detect_file, path, _options(*ctl))
            for _ in run:
                pass
            s = run.summary
            image = _rgb(cv2.imread(str(s.images[0]))) if s.images else None
            return image, *_result_values(service, run, s)

        def run_video(path, n, *ctl, progress=gr.Progress()):  # noqa: B008 (Gradio's own idiom)
            if not path:
                raise gr.Error("Choose a video first.")
            run = _call(service.detect_file, path, _options(*ctl), stride=int(n))
            rows: list[list] = []
            last = 0.0
            for update in run:
                if update.frame is not None:
                    rows += _rows(update.frame)
                total = update.total or 0
                progress((update.done, total) if total else None, desc="Processing video", unit="frames")
                if time.monotonic() - last > 2 and update.frame is not None:  # partial results every 2 s
                    last = time.monotonic()
                    yield None, _banner(update.status), _table(rows, DETECTION_COLUMNS), *([gr.skip()] * 4)
            s = run.summary
            yield str(s.video) if s.video else None, *_result_values(service, run, s)

        def stream_frame(frame, state, *ctl):
            if frame is None:
                return None, "", None, "", state
            now = time.monotonic()
            if state is not None and (state.closed or now - state.last_frame_at > LIVE_GAP_S):
                state.finish()
                state = None
            if state is None:
                state = _call(service.live, _options(*ctl))
            update = state.process(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            f = update.frame
            counts = _table([[k, v] for k, v in sorted(f.counts().items())], ["class", "count"])
            info = f"Live run `{state.run.summary.run_id}`: {f.frame_index + 1} frames, " + (
                f"{len(state.run.monitor.events)} violation event(s)" if state.run.monitor else "no policy"
            )
            return _rgb(f.annotated), _banner(update.status), counts, info, state

        def stop_live(state):
            if state is None:
                return None, "No live run."
            s = state.finish()
            return None, f"Saved live run `{s.run_id}`: {s.frames} frames, {len(s.events)} events, in `{s.output_dir}`"

        def show_history(a, b, src):
            runs = service.history(a, b, src)
            cols = ["id", "source", "kind", "started_at", "status", "frames", "policy", "conf", "model"]
            return _table([[getattr(r, c) for c in cols] for r in runs], cols)

        def export_history(a, b):
            return str(_call(service.workbook, None, a, b))

        def add_model(path):
            if not path:
                return gr.skip(), gr.skip()
            info = _call(service.add_upload, path)
            choices = [str(p) for p in service.available_models()]
            return gr.update(choices=choices, value=str(info.path)), f"Loaded {html.escape(info.describe())}"

        def model_changed(path):
            if not path:
                return gr.update(choices=[], value=[]), _no_model_notice(), _no_model_notice()
            info = _call(service.model_info, path)
            return gr.update(choices=list(info.names.values()), value=[]), "", html.escape(info.describe())

        def add_zone_point(text, evt: gr.SelectData, image):
            if image is None or evt is None:
                return text
            h, w = np.asarray(image).shape[:2]
            x, y = evt.index
            return f"{text} {x / w:.3f},{y / h:.3f}".strip()

        image_btn.click(run_image, [image_in, *controls], [image_out, *image_res])
        video_btn.click(run_video, [video_in, stride, *controls], [video_out, *video_res])
        live_outputs = [cam_out, live_status, live_counts, live_info, live_state]
        cam.stream(stream_frame, [cam, live_state, *controls], live_outputs, stream_every=0.2,
                   time_limit=LIVE_TIME_LIMIT_S, concurrency_limit=4)  # fmt: skip
        stop_btn.click(stop_live, [live_state], [live_state, live_info])
        hist_btn.click(show_history, [start, end, source], [runs_table])
        hist_xlsx_btn.click(export_history, [start, end], [hist_file])
        upload.upload(add_model, [upload], [model, model_info])
        model.change(model_changed, [model], [classes, notice, model_info])
        image_out.select(add_zone_point, [zone, image_out], [zone])
        ui.load(model_changed, [model], [classes, notice, model_info])
    return ui


def _result_widgets(prefix: str) -> list[gr.components.Component]:
    """Status banner, detections table, counts chart, events table, where-saved note and Excel file."""
    status = gr.HTML(elem_id=f"{prefix}-status")
    table = gr.Dataframe(label="Detections", elem_id=f"{prefix}-table", wrap=True)
    with gr.Row():
        chart = gr.BarPlot(x="class", y="count", title="Detections per class", elem_id=f"{prefix}-chart")
        events = gr.Dataframe(label="Violation events", elem_id=f"{prefix}-events")
    saved = gr.Markdown(elem_id=f"{prefix}-saved")
    excel = gr.File(label="Excel workbook of this run", elem_id=f"{prefix}-excel")
    return [status, table, chart, events, saved, excel]


def _result_values(service: DetectionService, run: DetectionRun, s: RunSummary) -> list:
    rows = [_detection_row(r) for r in service.store.detections(s.run_id)]
    counts = pd.DataFrame({"class": list(s.counts), "count": list(s.counts.values())})
    # Bars start at zero (Vega would otherwise fit the axis to the data, hiding a single bar).
    chart = gr.BarPlot(value=counts, y_lim=[0, max(s.counts.values(), default=0) * 1.1 + 1])
    events = _table([_event_row(e) for e in s.events], EVENT_COLUMNS)
    violated = bool(s.events)
    banner = _banner_html(not violated, f"{len(s.events)} violation event(s)" if violated else "no violations")
    notes = [f"{s.detections} detection(s) in {s.frames} frame(s). Saved to `{s.output_dir}` (run `{s.run_id}`)"]
    notes += [f"Skipped {b.name}: {b.reason}" for b in s.skipped] + [f"Warning: {w}" for w in s.warnings]
    if s.tracks:
        notes.append("Unique tracked: " + ", ".join(f"{k} {v}" for k, v in sorted(s.tracks.items())))
    workbook = str(service.workbook(run_id=s.run_id))
    return [banner, _table(rows, DETECTION_COLUMNS), chart, events, "\n\n".join(notes), workbook]


def _call(fn, *args, **kwargs):
    """Run a service call; its user-facing errors become visible Gradio errors."""
    try:
        return fn(*args, **kwargs)
    except ServiceError as e:
        raise gr.Error(str(e), duration=None) from e


def _options(model, conf, iou, classes, imgsz, track, policy, zone) -> RunOptions:
    return RunOptions(
        weights=model, conf=float(conf), iou=float(iou), classes=list(classes or []), imgsz=int(imgsz),
        track=bool(track), policy=None if policy in (None, NO_POLICY) else policy, zone=_parse_zone(zone),
    )  # fmt: skip


def _parse_zone(text: str | None) -> list[tuple[float, float]] | None:
    if not text or not text.strip():
        return None
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in text.split()]
    except ValueError:
        raise gr.Error(
            "Danger zone: write points as x,y pairs separated by spaces, e.g. 0.3,0.2 0.7,0.2 0.5,0.9"
        ) from None
    if len(points) < 3 or any(len(p) != 2 or not all(0 <= v <= 1 for v in p) for p in points):
        raise gr.Error("Danger zone: at least three x,y points with values between 0 and 1")
    return points


def _rows(frame: FrameResult) -> list[list]:
    """Table rows for a frame's detections as they arrive (partial video results)."""
    return [
        _table_row(frame.source, frame.frame_index, frame.timestamp, d.class_name, d.confidence, d.xyxy,
                   d.track_id, d.mask_area)
        for d in frame.detections
    ]  # fmt: skip


def _detection_row(d: DetectionRecord) -> list:
    """A table row for a stored detection (the final table, as the workbook has it)."""
    return _table_row(d.item, d.frame_index, d.video_time, d.class_name, d.confidence, (d.x1, d.y1, d.x2, d.y2),
                      d.track_id, d.mask_area)  # fmt: skip


def _table_row(
    item: str,
    frame: int,
    time_s: float,
    class_name: str,
    conf: float,
    xyxy: tuple[float, ...],
    track: int | None,
    mask_area: float | None,
) -> list:
    """One row in `DETECTION_COLUMNS` order."""
    return [item, frame, round(time_s, 2), class_name, round(conf, 3), *(round(v) for v in xyxy), track,
            None if mask_area is None else round(mask_area)]  # fmt: skip


def _event_row(e: SafetyEvent) -> list:
    return [e.id, e.reason, e.class_name, e.start_frame, e.end_frame, round(e.start_time, 2), round(e.end_time, 2),
            round(e.peak_confidence, 3), "closed" if e.closed else "open"]  # fmt: skip


def _table(rows: list[list], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _banner(status: FrameStatus | None) -> str:
    if status is None:
        return _banner_html(True, "no safety policy selected")
    return _banner_html(status.ok, "OK" if status.ok else ", ".join(status.reasons))


def _banner_html(ok: bool, text: str) -> str:
    color, label = ("#2e7d32", "OK") if ok else ("#c62828", "VIOLATION")
    style = f"background:{color};color:white;padding:10px 16px;border-radius:6px;font-size:1.3em;font-weight:bold"
    return f'<div class="safety-banner" data-ok="{str(ok).lower()}" style="{style}">{label}: {html.escape(text)}</div>'


def _rgb(image: np.ndarray | None) -> np.ndarray | None:
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _no_model_notice() -> str:
    return "**No model loaded.** " + NO_WEIGHTS_HELP.replace("\n", "  \n")


def _finish_live(state: LiveSession | None) -> None:
    """When a user's session ends, close their live run so its files and records are complete."""
    if state is not None:
        state.finish()
