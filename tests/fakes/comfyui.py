"""A fake ComfyUI on 127.0.0.1 that behaves like its ``server.py`` and ``execution.py``.

What it copies, and where from:

- ``POST /prompt`` validates the graph before queueing: an unknown ``class_type`` is a 400 with
  empty ``node_errors``; a graph with no output node is ``prompt_no_outputs``; inputs are
  converted like ``validate_inputs`` (``int(value)`` for INT, so ``"{{seed}}"`` fails with
  ``invalid_input_type``), checked against min/max and COMBO lists (``value_not_in_list``),
  missing ones are ``required_input_missing``; any failure is a 400 with
  ``prompt_outputs_failed_validation`` and ``node_errors`` per node. Success answers
  ``{prompt_id, number, node_errors}``; the ``prompt_id`` is the client's when it sent one
  (``str(json_data.get("prompt_id", uuid.uuid4()))`` in current builds).
- one prompt executes at a time, in queue order; messages about a prompt go only to the socket
  of the ``client_id`` that queued it (``send_sync(..., server.client_id)``); ``status`` goes to all.
- order of messages: ``execution_start``, ``execution_cached``, per node ``executing``; the
  sampler sends ``progress {value, max, prompt_id, node}`` per step and binary previews
  (``>I`` event 1, ``>I`` format 1 = JPEG, then the bytes); ``SaveImage`` sends ``executed`` with
  ``output.images``; then ``executing {node: null}`` and ``execution_success``.
- an identical graph runs nothing again: every node is reported in ``execution_cached``.
- ``POST /interrupt`` stops the running prompt (or, with ``{"prompt_id"}``, only that one):
  ``execution_interrupted``; ``POST /queue {"delete": [...]}`` drops waiting prompts; both 200 empty.
- ``POST /upload/image``: multipart, the file in ``image`` (400 without one), ``type``
  (``input``/``temp``/``output``), ``subfolder``, ``overwrite``; a different file under a taken
  name gets `` (1)``; answers ``{name, subfolder, type}``. ``LoadImage``/``LoadImageMask`` check
  their ``image`` like ``VALIDATE_INPUTS`` (``exists_annotated_filepath``): "Invalid image file".
- ``/history/{id}`` is ``{}`` until the prompt ends; ``/view`` serves the file, 400 for ``..``,
  404 for unknown names; ``/system_stats`` and ``/object_info/{class}`` as the real ones.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image as PILImage

from tests.fakes import serve_locally

CHECKPOINTS = ["v1-5-pruned-emaonly-fp16.safetensors", "sd_xl_base_1.0.safetensors"]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m"]
SCHEDULERS = ["normal", "karras", "simple"]
LINK = ("LINK",)
NODES: dict[str, dict[str, tuple[Any, ...]]] = {
    "CheckpointLoaderSimple": {"ckpt_name": ("COMBO", CHECKPOINTS)},
    "CLIPTextEncode": {"text": ("STRING",), "clip": LINK},
    "EmptyLatentImage": {"width": ("INT", 16, 16384), "height": ("INT", 16, 16384), "batch_size": ("INT", 1, 4096)},
    "KSampler": {"model": LINK, "seed": ("INT", 0, 2**64 - 1), "steps": ("INT", 1, 10000), "cfg": ("FLOAT", 0, 100),
                 "sampler_name": ("COMBO", SAMPLERS), "scheduler": ("COMBO", SCHEDULERS), "positive": LINK,
                 "negative": LINK, "latent_image": LINK, "denoise": ("FLOAT", 0, 1)},
    "VAEDecode": {"samples": LINK, "vae": LINK},
    "SaveImage": {"images": LINK, "filename_prefix": ("STRING",)},
    "LoadImage": {"image": ("FILE",)},
    "LoadImageMask": {"image": ("FILE",), "channel": ("COMBO", ["alpha", "red", "green", "blue"])},
    "VAEEncode": {"pixels": LINK, "vae": LINK},
    "SetLatentNoiseMask": {"samples": LINK, "mask": LINK},
    "PreviewImage": {"images": LINK},
}
OUTPUT_NODES = {"SaveImage", "PreviewImage"}


def encoded(fmt: str, size: tuple[int, int], color: tuple[int, int, int] = (90, 40, 160)) -> bytes:
    """A real image of ``size`` in ``fmt``."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


@dataclass
class Queued:
    """One queue item: ``(number, prompt_id, prompt, extra_data, outputs)`` in ComfyUI."""

    number: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str

    def row(self) -> list[Any]:
        """The list form ``/queue`` shows."""
        return [self.number, self.prompt_id, self.graph, {"client_id": self.client_id},
                [n for n, node in self.graph.items() if node["class_type"] in OUTPUT_NODES]]


@dataclass
class FakeComfyUI:
    """Start it, point ``url`` at ``self.url``; script ``fail_at`` (an execution_error); read the logs."""

    step_time: float = 0.01
    preview_every: int = 2
    fail_at: dict[str, Any] | None = None
    hold_answers: asyncio.Event | None = None  # when given, /prompt queues at once but answers once it is set
    prompts: list[dict[str, Any]] = field(default_factory=list)
    interrupts: list[str | None] = field(default_factory=list)  # prompt running when each arrived
    deleted: list[str] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.pending: list[Queued] = []
        self.running: Queued | None = None
        self._wake = asyncio.Event()
        self._interrupted = False
        self._done_graphs: dict[str, dict[str, Any]] = {}
        self._number = 0
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> FakeComfyUI:
        """Listen on a free port of 127.0.0.1 and start the executor."""
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/object_info/{node_class}", self._object_info)
        self._runner, self.url = await serve_locally(app)
        self._worker = asyncio.create_task(self._execute_forever())
        return self

    async def stop(self) -> None:
        """Stop executing and close the server."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for socket in list(self.sockets.values()):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ routes
    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = socket
        try:
            await self._send("status", {"status": self._queue_info(), "sid": sid}, sid)
            async for message in socket:
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is socket:
                self.sockets.pop(sid)
        return socket

    async def _prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPInternalServerError(text="500 Internal Server Error") from None
        if "prompt" not in body:
            return web.json_response({"error": _error("no_prompt", "No prompt provided", "No prompt provided"),
                                      "node_errors": {}}, status=400)
        graph = body["prompt"]
        self.prompts.append(body)
        refused = validate(graph, self.input_files())
        if refused is not None:
            return web.json_response(refused, status=400)
        self._number += 1
        item = Queued(self._number, str(body.get("prompt_id", uuid.uuid4())), graph, str(body.get("client_id", "")))
        self.pending.append(item)
        self._wake.set()
        await self._broadcast_status()
        if self.hold_answers is not None:
            await self.hold_answers.wait()
        return web.json_response({"prompt_id": item.prompt_id, "number": item.number, "node_errors": {}})

    def input_files(self) -> set[str]:
        """Names a ``LoadImage`` node may use: ``name`` or ``subfolder/name`` under ``input``."""
        return {key.removeprefix("input/").lstrip("/") for key in self.files if key.startswith("input/")}

    async def _upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        if kind not in ("input", "temp", "output"):
            return web.Response(status=400)
        subfolder, name, data = str(post.get("subfolder") or ""), image.filename, image.file.read()
        while f"{kind}/{subfolder}/{name}" in self.files and self.files[f"{kind}/{subfolder}/{name}"] != data:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem} (1){dot}{ext}"  # ComfyUI counts up; one step is enough for the tests
        self.files[f"{kind}/{subfolder}/{name}"] = data
        self.uploads.append({"name": name, "subfolder": subfolder, "type": kind, "overwrite": post.get("overwrite"),
                             "content_type": image.content_type, "data": data})
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("filename", "")
        if not name or name.startswith("/") or ".." in name:
            return web.Response(status=400)
        key = f"{request.query.get('type', 'output')}/{request.query.get('subfolder', '')}/{name}"
        if key not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[key], content_type="image/png",
                            headers={"Content-Disposition": f'filename="{name}"'})

    async def _interrupt(self, request: web.Request) -> web.Response:
        try:
            wanted = (await request.json()).get("prompt_id")
        except ValueError:
            wanted = None
        running = self.running.prompt_id if self.running else None
        self.interrupts.append(running)
        if running is not None and wanted in (None, running):
            self._interrupted = True
        return web.Response(status=200)

    async def _get_queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [self.running.row()] if self.running else [],
                                  "queue_pending": [item.row() for item in self.pending]})

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.deleted.append(prompt_id)
            self.pending = [item for item in self.pending if item.prompt_id != prompt_id]
        return web.Response(status=200)

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"os": "posix", "comfyui_version": "0.3.68", "python_version": "3.12"},
                                  "devices": [{"name": "cuda:0 Fake GPU", "type": "cuda", "index": 0,
                                               "vram_total": 8 << 30, "vram_free": 6 << 30}]})

    async def _object_info(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        if name != "CheckpointLoaderSimple":
            return web.json_response({})
        return web.json_response({name: {"input": {"required": {"ckpt_name": [CHECKPOINTS, {"tooltip": "…"}]}},
                                         "output": ["MODEL", "CLIP", "VAE"], "name": name, "output_node": False}})

    # --------------------------------------------------------------- executor
    async def _execute_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                self.running, self._interrupted = self.pending.pop(0), False
                await self._broadcast_status()
                await self._execute(self.running)
                self.running = None
                await self._broadcast_status()

    async def _execute(self, item: Queued) -> None:
        messages: list[list[Any]] = []

        async def tell(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": item.prompt_id}
            messages.append([kind, data])
            await self._send(kind, data, item.client_id)

        key = json.dumps(item.graph, sort_keys=True)
        await tell("execution_start", {"timestamp": 0})
        cached = self._done_graphs.get(key)
        await tell("execution_cached", {"nodes": list(item.graph) if cached else []})
        outputs = cached if cached is not None else await self._run_nodes(item, tell)
        if outputs is None:
            return self._record(item, {}, "error", messages)
        self._done_graphs[key] = outputs
        await tell("executing", {"node": None})
        await tell("execution_success", {"timestamp": 0})
        self._record(item, outputs, "success", messages)

    async def _run_nodes(self, item: Queued, tell: Any) -> dict[str, Any] | None:
        outputs: dict[str, Any] = {}
        for node_id, node in item.graph.items():
            await tell("executing", {"node": node_id, "display_node": node_id})
            kind = node["class_type"]
            if self.fail_at is not None and self.fail_at.get("node_type") == kind:
                failure, self.fail_at = self.fail_at, None
                await tell("execution_error", {"node_id": node_id, "executed": [], **failure})
                return None
            if kind == "KSampler" and not await self._sample(item, node_id, int(node["inputs"]["steps"]), tell):
                await tell("execution_interrupted", {"node_id": node_id, "node_type": kind, "executed": []})
                return None
            if kind in OUTPUT_NODES:
                outputs[node_id] = {"images": [self._save(item, kind)]}
                await tell("executed", {"node": node_id, "display_node": node_id, "output": outputs[node_id]})
        return outputs

    async def _sample(self, item: Queued, node_id: str, steps: int, tell: Any) -> bool:
        for step in range(1, steps + 1):
            await asyncio.sleep(self.step_time)
            if self._interrupted:
                return False
            await tell("progress", {"value": step, "max": steps, "node": node_id})
            if self.preview_every and step % self.preview_every == 0:
                frame = struct.pack(">II", 1, 1) + encoded("JPEG", (16, 16), (step * 7 % 256, 60, 90))
                await self._send_bytes(frame, item.client_id)
        return True

    def _save(self, item: Queued, kind: str) -> dict[str, str]:
        latent: dict[str, Any] = next((n["inputs"] for n in item.graph.values()
                                       if n["class_type"] == "EmptyLatentImage"), {})
        size = (int(latent.get("width", 512)) // 8 * 8, int(latent.get("height", 512)) // 8 * 8)
        loaded = next((n["inputs"]["image"] for n in item.graph.values() if n["class_type"] == "LoadImage"), None)
        if not latent and loaded is not None:  # img2img: the output has the picture's size, a multiple of 8
            key = f"input/{loaded}" if "/" in loaded else f"input//{loaded}"
            with PILImage.open(io.BytesIO(self.files[key])) as pic:
                size = (pic.width // 8 * 8 or 8, pic.height // 8 * 8 or 8)
        folder = "output" if kind == "SaveImage" else "temp"
        name = f"SakaiBot_{len(self.files) + 1:05d}_.png"
        self.files[f"{folder}//{name}"] = encoded("PNG", size)
        return {"filename": name, "subfolder": "", "type": folder}

    def _record(self, item: Queued, outputs: dict[str, Any], status: str, messages: list[list[Any]]) -> None:
        self.history[item.prompt_id] = {
            "prompt": item.row(), "outputs": outputs, "meta": {},
            "status": {"status_str": status, "completed": status == "success", "messages": messages}}

    # --------------------------------------------------------------- sending
    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.pending) + (1 if self.running else 0)}}

    async def _broadcast_status(self) -> None:
        await self._send("status", {"status": self._queue_info()}, None)

    async def _send(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for socket in targets:
            if not socket.closed:
                await socket.send_str(json.dumps({"type": kind, "data": data}))

    async def _send_bytes(self, frame: bytes, sid: str) -> None:
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed:
            await socket.send_bytes(frame)


def validate(graph: Any, input_files: set[str] | None = None) -> dict[str, Any] | None:
    """ComfyUI's ``validate_prompt``: ``None`` if the graph may run, else the 400 body."""
    if not isinstance(graph, dict):
        return {"error": _error("invalid_prompt", "Invalid prompt"), "node_errors": {}}
    for node_id, node in graph.items():
        if not isinstance(node, dict) or node.get("class_type") not in NODES:
            kind = node.get("class_type") if isinstance(node, dict) else None
            return {"error": _error("missing_node_type", f"Node '{kind}' not found. The custom node may not be "
                                    "installed.", f"Node ID '#{node_id}'"), "node_errors": {}}
    if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
        return {"error": _error("prompt_no_outputs", "Prompt has no outputs"), "node_errors": []}
    node_errors = {node_id: {"errors": errors, "dependent_outputs": [], "class_type": node["class_type"]}
                   for node_id, node in graph.items() if (errors := _input_errors(graph, node, input_files or set()))}
    if not node_errors:
        return None
    details = "\n".join(f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"])
    return {"error": _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
            "node_errors": node_errors}


def _input_errors(graph: dict[str, Any], node: dict[str, Any], input_files: set[str]) -> list[dict[str, Any]]:
    errors = []
    inputs = node.get("inputs") or {}
    for name, spec in NODES[node["class_type"]].items():
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
        elif spec[0] == "FILE":
            if inputs[name] not in input_files:
                errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                     f"{name} - Invalid image file: {inputs[name]}", input_name=name))
        elif (problem := _value_error(graph, name, inputs[name], spec)) is not None:
            errors.append(problem)
    return errors


def _value_error(graph: dict[str, Any], name: str, value: Any, spec: tuple[Any, ...]) -> dict[str, Any] | None:
    kind = spec[0]
    if kind == "LINK":
        ok = isinstance(value, list) and len(value) == 2 and str(value[0]) in graph
        return None if ok else _error("bad_linked_input", "Bad linked input, must be a length-2 list of "
                                      "[node_id, slot_index]", f"{name}, {value}", input_name=name)
    if kind == "COMBO":
        return None if value in spec[1] else _error("value_not_in_list", "Value not in list",
                                                    f"{name}: '{value}' not in {spec[1]}", input_name=name)
    if kind == "STRING":
        return None
    try:
        number = int(value) if kind == "INT" else float(value)
    except (TypeError, ValueError) as exc:
        return _error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                      f"{name}, {value}, {exc}", input_name=name)
    if number < spec[1]:
        return _error("value_smaller_than_min", f"Value {number} smaller than min of {spec[1]}", name)
    if number > spec[2]:
        return _error("value_bigger_than_max", f"Value {number} bigger than max of {spec[2]}", name)
    return None


OOM = {"node_type": "KSampler", "exception_type": "torch.OutOfMemoryError",
       "exception_message": "Allocation on device 0 would exceed allowed memory. (out of memory)",
       "traceback": ["..."], "current_inputs": {}, "current_outputs": []}
