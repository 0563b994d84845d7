"""Which engine runs each part of BLIP-base fastest on this CPU: torch, ONNX Runtime, OpenVINO,
each in fp32 and int8, same run, same inputs.

Two parts, as `--int8` splits the work:
- the vision encoder (ViT-B/16 at 384 px), one batch of `--batch` images, exported as
  im2text exports it (`engine.graphs.export_graph`);
- the text decoder's steps with a KV cache: the 12-layer decoder + LM head written as one step
  module (`DecoderStep`: token + position in, self-attention keys/values of the tokens so far,
  the image's cross-attention keys/values computed once) that returns the logits and the grown
  self-attention cache. It is checked equal to transformers' `BlipTextLMHeadModel` with its own
  cache, then exported as a graph with dynamic batch and cache length, and greedy-decodes
  `--tokens` steps in a loop that feeds each step's cache back in (what a graph decoder does in
  generate; OpenVINO keeps one infer request for the loop). Every engine decodes the same batch
  from the same prompt.

int8: torch `quantize_dynamic` (nn.Linear -> dynamic-int8 linears, what im2text's torch int8
uses), ONNX Runtime `quantize_dynamic` (QInt8 weights, MatMulInteger), OpenVINO NNCF
`compress_weights` (INT8_ASYM weights). Prints a markdown table of median seconds, speed-up over
torch fp32, max |logit diff| of the fp32 graphs to torch and greedy-token agreement with torch fp32.

    python benchmarks/int8_engines.py --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
from caption_throughput import build_blip_base
from torch import nn

from im2text.engine import graphs


class DecoderStep(nn.Module):
    """One decoding step of BLIP's text decoder over explicit cache tensors.

    self_k/self_v: (layers, batch, heads, past, head_dim); cross_k/cross_v: (layers, batch,
    heads, image tokens, head_dim). Returns (logits of the new token, self_k, self_v grown by one
    position). Dropout is off (eval), so this is transformers' computation in another layout.
    """

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.bert, self.head = decoder.bert, decoder.cls
        cfg = decoder.config
        self.heads = cfg.num_attention_heads
        self.dh = cfg.hidden_size // self.heads

    def _attend(self, att: nn.Module, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> torch.Tensor:  # fmt: skip
        b = x.shape[0]
        q = att.self.query(x).view(b, 1, self.heads, self.dh).transpose(1, 2)
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh), dim=-1)
        ctx = (p @ v).transpose(1, 2).reshape(b, 1, self.heads * self.dh)
        return att.output.LayerNorm(att.output.dense(ctx) + x)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, self_k: torch.Tensor,
                self_v: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        emb = self.bert.embeddings
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(position_ids)
        x = emb.LayerNorm(x)
        b = x.shape[0]
        new_k, new_v = [], []
        for i, layer in enumerate(self.bert.encoder.layer):
            sa = layer.attention.self
            k = torch.cat([self_k[i], sa.key(x).view(b, 1, self.heads, self.dh).transpose(1, 2)], 2)
            v = torch.cat([self_v[i], sa.value(x).view(b, 1, self.heads, self.dh).transpose(1, 2)],
                          2)  # fmt: skip
            new_k.append(k)
            new_v.append(v)
            x = self._attend(layer.attention, x, k, v)
            x = self._attend(layer.crossattention, x, cross_k[i], cross_v[i])
            x = layer.output(layer.intermediate(x), x)
        logits = self.head(x)[:, 0]
        return logits, torch.stack(new_k), torch.stack(new_v)


def cross_cache(decoder: nn.Module, image_states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    b, n, _ = image_states.shape
    heads = decoder.config.num_attention_heads
    dh = decoder.config.hidden_size // heads
    ks, vs = [], []
    for layer in decoder.bert.encoder.layer:
        ca = layer.crossattention.self
        ks.append(ca.key(image_states).view(b, n, heads, dh).transpose(1, 2))
        vs.append(ca.value(image_states).view(b, n, heads, dh).transpose(1, 2))
    return torch.stack(ks), torch.stack(vs)


StepFn = Callable[[list[np.ndarray]], list[np.ndarray]]


def greedy(step: StepFn, first_ids: np.ndarray, start: list[np.ndarray], cross: list[np.ndarray],
           tokens: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Greedy decode `tokens` steps after the prompt, as `generate` does: `start` is the
    prompt's cache, `first_ids` the token its logits chose."""
    b = cross[0].shape[1]
    ids = first_ids
    self_k, self_v = start
    out, first = [], None
    for t in range(tokens):
        pos = np.full((b, 1), t + 1, dtype=np.int64)
        logits, self_k, self_v = step([ids, pos, self_k, self_v, *cross])
        first = logits if first is None else first
        ids = logits.argmax(-1).astype(np.int64)[:, None]
        out.append(ids)
    return np.concatenate(out, 1), first  # type: ignore[return-value]


def openvino_step(path: Path) -> StepFn:
    """One compiled model and one infer request for the whole loop (no per-step setup)."""
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(path), "CPU",
        {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"},
    )  # fmt: skip
    request = compiled.create_infer_request()

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        result = request.infer(arrays, share_inputs=True)
        return [result[o] for o in compiled.outputs]

    return run


def torch_step(module: nn.Module) -> StepFn:
    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            return [t.numpy() for t in module(*(torch.from_numpy(a) for a in arrays))]

    return run


def export_step(step: DecoderStep, args: tuple[torch.Tensor, ...], backend: str, int8: bool,
                folder: Path) -> Path:  # fmt: skip
    names = ["input_ids", "position_ids", "self_k", "self_v", "cross_k", "cross_v"]
    if backend == "onnxruntime":
        batch = torch.export.Dim("batch", min=1, max=4096)
        past = torch.export.Dim("past", min=1, max=512)
        dyn = ({0: batch}, {0: batch}, {1: batch, 3: past}, {1: batch, 3: past}, {1: batch},
               {1: batch})  # fmt: skip
        path = folder / "step.onnx"
        with warnings.catch_warnings(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null), graphs._quiet_logs():  # fmt: skip
            warnings.simplefilter("ignore")
            torch.onnx.export(step, args, str(path), dynamo=True, input_names=names,
                              dynamic_shapes=dyn, external_data=True, optimize=True)  # fmt: skip
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with graphs._quiet_logs():
                quantize_dynamic(str(path), str(folder / "int8.onnx"), weight_type=QuantType.QInt8,
                                 use_external_data_format=True)  # fmt: skip
            path = folder / "int8.onnx"
        return path
    import openvino as ov

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(step, example_input=args)
    for i, name in enumerate(names):
        model.inputs[i].get_tensor().set_names({name})
    shapes = [[-1, 1], [-1, 1], [*args[2].shape[:1], -1, args[2].shape[2], -1, args[2].shape[4]]]
    shapes += [shapes[2], [args[4].shape[0], -1, *args[4].shape[2:]]]
    shapes += [shapes[4]]
    model.reshape({i: s for i, s in enumerate(shapes)})
    if int8:
        import nncf

        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), \
                contextlib.redirect_stderr(null), graphs._quiet_logs():  # fmt: skip
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    path = folder / "step.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up: lazy inits, allocator, first-run kernel choice
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    from transformers import BlipForConditionalGeneration

    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ckpt = build_blip_base(tmp)
        model = BlipForConditionalGeneration.from_pretrained(ckpt).eval()
        decoder = model.text_decoder
        bos = model.config.text_config.bos_token_id
        pixels = torch.randn(args.batch, 3, 384, 384)

        # --- vision encoder ---
        part = graphs.GraphPart("vision_model")
        vision_fp32 = model.vision_model
        with torch.inference_mode():
            ref_states = vision_fp32(pixel_values=pixels).last_hidden_state
        vision: dict[str, Callable[[], np.ndarray]] = {}
        vision["torch fp32"] = lambda: vision_fp32(pixel_values=pixels).last_hidden_state.numpy()
        q_vision = torch.ao.quantization.quantize_dynamic(
            BlipForConditionalGeneration.from_pretrained(ckpt).vision_model.eval(),
            {nn.Linear}, dtype=torch.qint8,
        )  # fmt: skip
        vision["torch int8"] = lambda: q_vision(pixel_values=pixels).last_hidden_state.numpy()
        for backend in ("onnxruntime", "openvino"):
            for int8 in (False, True):
                path = tmp / "vision" / f"{backend}-{int8}" / f"g{graphs.graph_suffix(backend)}"
                graphs.export_graph(vision_fp32, part, {"pixel_values": pixels[:2]}, backend,
                                    int8, path)  # fmt: skip
                run = graphs._runner(backend, path)
                vision[f"{backend} {'int8' if int8 else 'fp32'}"] = lambda run=run: run(
                    [pixels.numpy()]
                )[0]
        ref = ref_states.numpy()
        for name, fn in vision.items():
            with torch.inference_mode():
                seconds, out = timed(fn, args.repeats)
            cos = torch.nn.functional.cosine_similarity(
                torch.from_numpy(out).flatten(1), ref_states.flatten(1)
            ).mean()
            rows.setdefault(name, {})["vision"] = (seconds, float(np.abs(out - ref).max()),
                                                   float(cos))  # fmt: skip
            print(f"  vision {name}: {seconds:.2f} s", flush=True)

        # --- text decoder steps with a KV cache ---
        step = DecoderStep(decoder).eval()
        with torch.inference_mode():
            cross = [t.contiguous() for t in cross_cache(decoder, ref_states)]
            # The prompt token through transformers' own decoder: its cache starts every loop.
            bos_ids = torch.full((args.batch, 1), bos)
            out = decoder(input_ids=bos_ids, encoder_hidden_states=ref_states, use_cache=True,
                          return_dict=True)  # fmt: skip
            cache = out.past_key_values.self_attention_cache
            start = [
                torch.stack([cache.layers[i].keys for i in range(len(cache.layers))]),
                torch.stack([cache.layers[i].values for i in range(len(cache.layers))]),
            ]
            # The step module equals transformers on the same prefix (two tokens after bos).
            ids = torch.cat([bos_ids, torch.randint(1000, 2000, (args.batch, 2))], 1)
            want = decoder(input_ids=ids, encoder_hidden_states=ref_states).logits[:, -1]
            k, v = start
            for t in (1, 2):
                got, k, v = step(ids[:, t : t + 1], torch.full((args.batch, 1), t), k, v, *cross)
            equal = (got - want).abs().max().item()
            print(f"  step module vs transformers: max |logit diff| {equal:.2e}", flush=True)
            assert equal < 1e-4, equal
        start_np = [t.numpy() for t in start]
        first_ids = out.logits[:, -1].argmax(-1, keepdim=True).numpy()
        cross_np = [t.numpy() for t in cross]
        steps: dict[str, StepFn] = {"torch fp32": torch_step(step)}
        q_step = torch.ao.quantization.quantize_dynamic(
            DecoderStep(BlipForConditionalGeneration.from_pretrained(ckpt).text_decoder
                        ).eval(), {nn.Linear}, dtype=torch.qint8)  # fmt: skip
        steps["torch int8"] = torch_step(q_step)
        example = (torch.full((2, 1), bos), torch.ones(2, 1, dtype=torch.long),
                   start[0][:, :2].contiguous(), start[1][:, :2].contiguous(),
                   cross[0][:, :2].contiguous(), cross[1][:, :2].contiguous())  # fmt: skip
        for backend in ("onnxruntime", "openvino"):
            for int8 in (False, True):
                folder = tmp / "decoder" / f"{backend}-{int8}"
                folder.mkdir(parents=True)
                t0 = time.perf_counter()
                path = export_step(step, example, backend, int8, folder)
                print(f"  exported {backend} int8={int8} in {time.perf_counter() - t0:.0f} s",
                      flush=True)  # fmt: skip
                label = f"{backend} {'int8' if int8 else 'fp32'}"
                if backend == "openvino":
                    steps[label] = openvino_step(path)
                else:
                    steps[label] = graphs._runner(backend, path)
        ref_tokens, ref_first = greedy(
            steps["torch fp32"], first_ids, start_np, cross_np, args.tokens
        )
        for name, fn in steps.items():
            seconds, (tokens, first) = timed(
                lambda fn=fn: greedy(fn, first_ids, start_np, cross_np, args.tokens), args.repeats
            )
            same = float((tokens == ref_tokens).all(1).mean())
            diff = float(np.abs(first - ref_first).max())
            cos = torch.nn.functional.cosine_similarity(
                torch.from_numpy(first), torch.from_numpy(ref_first), dim=-1
            ).mean()
            rows.setdefault(name, {})["decoder"] = (seconds, diff, float(cos), same)
            print(f"  decoder {name}: {seconds:.2f} s", flush=True)

    import onnxruntime
    import openvino

    print(
        f"\nBLIP-base (random weights), batch {args.batch}, 384 px, {args.tokens} greedy decoder "
        f"steps after the prompt; median of {args.repeats}; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.get_version()}; {torch.get_num_threads()} threads; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| engine | vision s | vs torch fp32 | max abs diff / cosine | decoder s | "
        "vs torch fp32 | first-step logits: max abs diff / cosine | same greedy tokens |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    v0, d0 = rows["torch fp32"]["vision"][0], rows["torch fp32"]["decoder"][0]
    for name, r in rows.items():
        vs, vd, vc = r["vision"]
        ds, dd, dc, same = r["decoder"]
        print(f"| {name} | {vs:.2f} | {v0 / vs:.2f}x | {vd:.1e} / {vc:.5f} | {ds:.2f} | "
              f"{d0 / ds:.2f}x | {dd:.1e} / {dc:.5f} | {same:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
