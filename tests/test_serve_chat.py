"""`/v1/chat/completions` for real: token streaming, usage, n, limits — with the official client.

A real uvicorn server on 127.0.0.1 (free port) serves tiny random checkpoints; the official
`openai` client talks to it over loopback sockets. Expected answers and token counts are computed
independently, with transformers' own `generate` on the same checkpoint. To see that a streamed
answer arrives while it is generated, a forward hook on the real decoder records (and spaces out)
each decoding step. Every request has a timeout, so no test can hang.
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'im2text[serve]'")
pytest.importorskip("openai", reason="the official client: pip install openai")
import openai
import transformers
from conftest import ThreadServer as _ThreadServer
from conftest import png

import im2text
from im2text.serve import ServeConfig, create_app

STEP_S = 0.04  # the decoder's pace while a test watches the stream


def messages(*images: bytes, text: str | None = None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for data in images:
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return [{"role": "user", "content": parts}]


MIN_TOKENS = 8  # the served models' minimum answer length


class ThreadServer(_ThreadServer):
    """The shared test server, with an official `openai` client pointed at it."""

    def __enter__(self) -> ThreadServer:
        super().__enter__()
        self.client = openai.OpenAI(
            base_url=self.url + "/v1", api_key="none", max_retries=0, timeout=60
        )
        return self


@pytest.fixture(scope="module")
def paths(tiny) -> dict[str, Path]:
    return {k: tiny(k) for k in ("blip", "blip-vqa", "git")}


@pytest.fixture(scope="module")
def models(paths) -> dict[str, im2text.Model]:
    out = {k: im2text.load(str(p)) for k, p in paths.items()}
    for m in out.values():
        # Random weights may end a text at once; streaming needs several words to show.
        m.generation = m.generation.merged(min_new_tokens=MIN_TOKENS)
    return out


@pytest.fixture(scope="module")
def live(models) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(models, ServeConfig(max_beams=4))) as server:
        yield server


class Steps:
    """A forward hook on a real decoder: the time of every decoding step, each `pause` long."""

    def __init__(self, module: torch.nn.Module, pause: float = STEP_S) -> None:
        self.times: list[float] = []
        self.pause = pause
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.times.append(time.monotonic())
        time.sleep(self.pause)

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()


def decoder(model: im2text.Model) -> torch.nn.Module:
    return model.family.model.text_decoder


def hf_generate(path: Path, kind: str, image: bytes, text: str | None, **kw: Any) -> Any:
    """transformers alone, on the same checkpoint: (texts, generated token counts, prompt ids)."""
    kw.setdefault("min_new_tokens", MIN_TOKENS)  # what the served models default to (below)
    processor = transformers.AutoProcessor.from_pretrained(path)
    cls = {
        "blip": transformers.BlipForConditionalGeneration,
        "blip-vqa": transformers.BlipForQuestionAnswering,
    }[kind]
    hf = cls.from_pretrained(path).eval()
    pil = Image.open(io.BytesIO(image)).convert("RGB")
    inputs = processor(images=pil, text=text, return_tensors="pt")
    with torch.inference_mode():
        out = hf.generate(
            **inputs, num_beams=1, return_dict_in_generate=True, output_scores=True, **kw
        )
    steps = len(out.scores)
    sep = hf.config.text_config.sep_token_id
    texts, counts = [], []
    for row in out.sequences[:, -steps:].tolist():
        n = row.index(sep) + 1 if sep in row else steps  # up to and with the end of text
        counts.append(n)
        texts.append(processor.tokenizer.decode(row[:n], skip_special_tokens=True).strip())
    prompt_ids = processor.tokenizer(text).input_ids if text else []
    return texts, counts, prompt_ids


def stream_pieces(live: ThreadServer, **kw: Any) -> tuple[list[tuple[float, str]], list[Any]]:
    """(arrival time, text) of every content chunk, and all chunks."""
    pieces, chunks = [], []
    for chunk in live.client.chat.completions.create(stream=True, **kw):
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append((time.monotonic(), chunk.choices[0].delta.content))
    return pieces, chunks


# --- streaming: tokens as they are generated ----------------------------------------------------


def test_stream_sends_each_word_while_the_rest_is_still_being_generated(live, models) -> None:
    image = png(1)
    with Steps(decoder(models["blip"])) as steps:
        pieces, chunks = stream_pieces(live, model="blip", messages=messages(image), max_tokens=30)
    assert len(steps.times) >= 20  # the tiny decoder ran (nearly) all 30 steps
    generation = steps.times[-1] - steps.times[0]
    early = [t for t, _ in pieces if t < steps.times[-1]]
    # Most words were on the wire before the last token was even computed...
    assert len(early) >= max(3, len(pieces) // 2), (len(early), len(pieces))
    # ...the first in the first third of the generation, the rest spread over it.
    assert pieces[0][0] < steps.times[0] + generation / 3
    assert pieces[-2][0] - pieces[0][0] > generation / 2
    # One word per piece (word-piece tokens join up into words), in order.
    assert all(re.fullmatch(r" ?\S+", text) for _, text in pieces), [t for _, t in pieces]
    streamed = "".join(text for _, text in pieces)
    done = live.client.chat.completions.create(
        model="blip", messages=messages(image), max_tokens=30
    )
    assert streamed == done.choices[0].message.content
    assert streamed == models["blip"].caption(image, max_new_tokens=30).text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # usage only when asked for (below)


@pytest.mark.parametrize(
    ("model", "text"),
    [("blip", "a picture of"), ("git", None), ("git", "what is it?"), ("blip-vqa", "what is it?")],
    ids=["blip-prompt", "git-caption", "git-ask", "blip-vqa-ask"],
)
def test_streamed_text_equals_the_answer(live, models, model: str, text: str | None) -> None:
    image = png(2)
    request = {"model": model, "messages": messages(image, text=text), "max_tokens": 24}
    pieces, _ = stream_pieces(live, **request)
    done = live.client.chat.completions.create(**request)
    m = models[model]
    asks = model == "blip-vqa" or (model == "git" and text)
    expected = (
        m.ask(image, text, max_new_tokens=24).text
        if asks
        else m.caption(image, prompt=text, max_new_tokens=24).text
    )
    assert "".join(t for _, t in pieces) == done.choices[0].message.content == expected
    assert len(pieces) > 2
    if text and not asks:
        assert pieces[0][1] == text  # the prompt the caption continues comes first, at once


def test_closing_the_stream_stops_the_generation(live, models) -> None:
    with Steps(decoder(models["blip"])) as steps:
        stream = live.client.chat.completions.create(
            model="blip", messages=messages(png(3)), max_tokens=60, stream=True
        )
        words = 0
        for chunk in stream:
            words += bool(chunk.choices and chunk.choices[0].delta.content)
            if words == 2:
                break
        stream.close()
        time.sleep(20 * STEP_S)
        stopped_at = len(steps.times)
        time.sleep(10 * STEP_S)
        assert len(steps.times) == stopped_at  # nothing decodes any more
    assert stopped_at < 40  # far from the 60 tokens asked for
    # The model's worker is free again at once.
    done = live.client.chat.completions.create(model="blip", messages=messages(png(3)))
    assert done.choices[0].message.content == models["blip"].caption(png(3)).text


# --- usage: real token counts -------------------------------------------------------------------


def test_usage_counts_the_tokens_generated_and_prompted(live, paths) -> None:
    image = png(4)
    for kind, text in (("blip", "a picture of"), ("blip-vqa", "what is it?")):
        texts, counts, prompt_ids = hf_generate(paths[kind], kind, image, text, max_new_tokens=20)
        request = {"model": kind, "messages": messages(image, text=text), "max_tokens": 20}
        done = live.client.chat.completions.create(**request)
        expected_text = f"{text} {texts[0]}".strip() if kind == "blip" else texts[0]
        assert done.choices[0].message.content == expected_text
        assert done.usage.completion_tokens == counts[0]
        assert done.usage.prompt_tokens == len(prompt_ids)
        assert done.usage.total_tokens == counts[0] + len(prompt_ids)

        _, chunks = stream_pieces(live, stream_options={"include_usage": True}, **request)
        last = chunks[-1]
        assert last.choices == [] and last.usage == done.usage  # OpenAI's include_usage chunk
        assert all(c.usage is None for c in chunks[:-1])


def test_usage_sums_over_several_images(live, models, paths) -> None:
    images = [png(5), png(6)]
    done = live.client.chat.completions.create(
        model="blip", messages=messages(*images, text="a picture of"), max_tokens=12
    )
    answers = [models["blip"].caption(i, prompt="a picture of", max_new_tokens=12) for i in images]
    assert done.choices[0].message.content == "\n".join(a.text for a in answers)
    counts = [hf_generate(paths["blip"], "blip", i, "a picture of", max_new_tokens=12)[1][0]
              for i in images]  # fmt: skip
    assert done.usage.completion_tokens == sum(counts)
    assert done.usage.prompt_tokens == 2 * 5  # [CLS] a picture of [SEP], per image


# --- n: independent samples ---------------------------------------------------------------------


def test_n_samples_independent_reproducible_choices(live, paths) -> None:
    image = png(7)
    request = {
        "model": "blip",
        "messages": messages(image),
        "max_tokens": 16,
        "n": 3,
        "temperature": 1.0,
        "seed": 1234,
    }
    done = live.client.chat.completions.create(**request)
    texts = [c.message.content for c in done.choices]
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert len(set(texts)) == 3  # three different samples, not one answer three times
    again = live.client.chat.completions.create(**request)
    assert [c.message.content for c in again.choices] == texts  # the seed makes them repeat
    other = live.client.chat.completions.create(**{**request, "seed": 99})
    assert [c.message.content for c in other.choices] != texts
    # The same draws from transformers alone: the same texts, and the tokens they took.
    torch.manual_seed(1234)
    hf_texts, counts, _ = hf_generate(
        paths["blip"], "blip", image, None, max_new_tokens=16, do_sample=True, temperature=1.0,
        top_k=50, top_p=1.0, num_return_sequences=3,
    )  # fmt: skip
    assert texts == hf_texts
    assert done.usage.completion_tokens == sum(counts)


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        ({"n": 2, "stream": True, "temperature": 1.0}, 400, "cannot be streamed"),
        ({"n": 2}, 422, "needs sampling"),
        ({"n": 5, "temperature": 1.0}, 422, "limit of 4"),
    ],
    ids=["n-stream", "n-greedy", "n-over-cap"],
)
def test_n_refusals_are_clear_json_errors(live, extra, status: int, message: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        live.client.chat.completions.create(model="blip", messages=messages(png()), **extra)
    assert info.value.status_code == status
    error = info.value.body
    assert error["param"] == "n" and message in error["message"]


# --- limits still apply to streams --------------------------------------------------------------


def test_streams_share_the_queue_limit_and_the_timeout(models) -> None:
    cfg = ServeConfig(max_queue=2, max_images=1, request_timeout_s=1.0)
    with ThreadServer(create_app({"blip": models["blip"]}, cfg)) as live:
        with Steps(decoder(models["blip"]), pause=0.1) as steps, ThreadPoolExecutor(2) as pool:
            slow = pool.submit(
                stream_pieces, live, model="blip", messages=messages(png(8)), max_tokens=40
            )
            deadline = time.monotonic() + 30
            while not steps.times:  # the slow stream holds the model's worker (about 4 s)
                assert time.monotonic() < deadline
                time.sleep(0.01)
            waits = pool.submit(  # queued behind it: times out, before any chunk, as JSON
                live.client.chat.completions.create,
                model="blip", messages=messages(png(9)), stream=True,
            )  # fmt: skip
            time.sleep(0.2)
            with pytest.raises(openai.RateLimitError) as busy:  # 1 running + 1 waiting = full
                live.client.chat.completions.create(model="blip", messages=messages(png(9)))
            assert busy.value.body["code"] == "queue_full"
            with pytest.raises(openai.InternalServerError) as late:
                waits.result(timeout=30)
            assert late.value.status_code == 503 and late.value.body["code"] == "timeout"
            pieces, _ = slow.result(timeout=60)
        assert (
            "".join(t for _, t in pieces) == models["blip"].caption(png(8), max_new_tokens=40).text
        )


def test_errors_before_the_first_piece_are_plain_json(live) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        live.client.chat.completions.create(
            model="blip",
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}],
            stream=True,
        )  # fmt: skip
    assert info.value.body["code"] == "invalid_image"
