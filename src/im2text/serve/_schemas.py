"""Request and response bodies (pydantic), which are also the OpenAPI documentation.

Static bounds here stop absurd values early; the configurable limits (`ServeConfig`) are checked
in the handlers. Task requests forbid unknown fields so a typo (`max_token`) is an error rather
than silently ignored; the OpenAI-compatible request ignores them, as OpenAI clients send many.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from im2text.tasks import TASKS, TaskSpec

IMAGE_DOC = (
    "Base64 image data, a data URL (data:image/png;base64,...), or an http(s) URL when the "
    "server allows remote URLs. With multipart/form-data, upload files in this field instead."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None,
        description="Model id (GET /v1/info); default: the first "
        "loaded model that can do the task.",
    )
    image: str | None = Field(None, description=IMAGE_DOC)
    images: list[str] | None = Field(None, description="Several images (see `image`).")


class _Generation(BaseModel):
    """Decoding settings; unset ones come from the model's preset."""

    max_new_tokens: int | None = Field(None, ge=1, le=1024)
    min_new_tokens: int | None = Field(None, ge=0, le=1024)
    num_beams: int | None = Field(None, ge=1, le=64)
    do_sample: bool | None = None
    temperature: float | None = Field(None, gt=0, le=10)
    top_k: int | None = Field(None, ge=1, le=1000)
    top_p: float | None = Field(None, gt=0, le=1)
    num_return_sequences: int | None = Field(None, ge=1, le=64)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    length_penalty: float | None = Field(None, ge=-10, le=10)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


GENERATION_FIELDS = tuple(_Generation.model_fields)


# Inputs of a task that are not among its parameters: the question of each (image, question)
# pair, and the texts `/v1/embed` embeds instead of images.
_INPUT_FIELDS: dict[str, dict[str, Any]] = {
    "ask": {"question": (str, Field(description="The question, asked of every image."))},
    "embed": {
        "texts": (list[str] | None, Field(None, description="Embed these texts instead of images."))
    },
}


def _task_request(spec: TaskSpec) -> type[BaseModel]:
    """The request body of `/v1/{task}`, built from the task table's parameters."""
    fields: dict[str, Any] = dict(_INPUT_FIELDS.get(spec.name, {}))
    for p in spec.params:
        if p.server:
            default = ... if p.required else p.default
            fields[p.name] = (p.annotation, Field(default, description=p.help, **p.bounds))
    bases = (_Request, _Generation) if spec.generates else (_Request,)
    name = f"{spec.name.capitalize()}Request"
    return create_model(name, __base__=bases, __doc__=spec.help.capitalize() + ".", **fields)


REQUESTS: dict[str, type[BaseModel]] = {name: _task_request(spec) for name, spec in TASKS.items()}
CaptionRequest = REQUESTS["caption"]
AskRequest = REQUESTS["ask"]
ReadRequest = REQUESTS["read"]
DetectRequest = REQUESTS["detect"]
MatchRequest = REQUESTS["match"]
ClassifyRequest = REQUESTS["classify"]
EmbedRequest = REQUESTS["embed"]


def body_doc(schema: type[BaseModel], multipart: bool) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}}}
    if multipart:
        ref = f"#/components/schemas/{schema.__name__}Form"
        content["multipart/form-data"] = {"schema": {"$ref": ref}}
    return {"requestBody": {"required": True, "content": content}}


# Fields that multipart forms may repeat (several values make a list).
LIST_FIELDS = frozenset(
    {"images", "texts"}
    | {p.name for t in TASKS.values() for p in t.params if "list" in str(p.annotation)}
)


# --- responses ------------------------------------------------------------------------------------


class _Record(BaseModel):
    path: str | None = Field(description="The image's name: upload filename or image[i].")
    model: str
    error: str | None = Field(description="Why this image failed, or null.")


class CaptionCandidate(BaseModel):
    text: str
    mean_logprob: float | None
    rerank: float | None = None


class CaptionRecord(_Record):
    caption: str | None
    mean_logprob: float | None = Field(
        description="Mean token log-probability (<= 0, higher is surer)."
    )
    captions: list[CaptionCandidate] | None = None


class AnswerRecord(_Record):
    question: str
    answer: str | None
    confidence: float | None = Field(description="Probability of the answer, in [0, 1].")
    ranking: list[tuple[str, float | None]] | None = None


class LineRecord(BaseModel):
    text: str
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels.")
    confidence: float | None = Field(description="The recogniser's confidence, in [0, 1].")


class ReadingRecord(_Record):
    text: str | None
    lines: list[LineRecord]


class RegionRecord(BaseModel):
    label: str
    box: list[float] = Field(description="x0, y0, x1, y1 in pixels.")
    score: float | None = Field(description="The region's score, in [0, 1].")


class DetectionRecord(_Record):
    labels: list[str] | None = Field(description="The distinct labels, first seen first.")
    regions: list[RegionRecord]


class MatchRecord(_Record):
    texts: list[str]
    similarity: list[float | None]
    probability: list[float | None]
    itm: list[float | None] | None = None


class ClassificationRecord(_Record):
    label: str | None
    probability: float | None = Field(description="The top label's probability.")
    labels: list[tuple[str, float | None]]


class EmbeddingRecord(_Record):
    embedding: list[float] | None = Field(description="L2-normalised float vector.")
    dim: int | None


class _Response(BaseModel):
    model: str = Field(description="The model that answered.")
    latency_ms: float = Field(description="Server time for this request, queueing included.")


class CaptionResponse(_Response):
    results: list[CaptionRecord]


class AskResponse(_Response):
    results: list[AnswerRecord]


class ReadResponse(_Response):
    results: list[ReadingRecord]


class DetectResponse(_Response):
    results: list[DetectionRecord]


class MatchResponse(_Response):
    results: list[MatchRecord]


class ClassifyResponse(_Response):
    results: list[ClassificationRecord]


class EmbedResponse(_Response):
    results: list[EmbeddingRecord]


RESPONSES: dict[str, type[_Response]] = {
    "caption": CaptionResponse,
    "ask": AskResponse,
    "read": ReadResponse,
    "detect": DetectResponse,
    "match": MatchResponse,
    "classify": ClassifyResponse,
    "embed": EmbedResponse,
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelInfo(BaseModel):
    id: str
    family: str
    tasks: list[str] = Field(description="Tasks this model is for.")
    can: list[str] = Field(description="Every task its family can do (endpoints accept these).")
    ready: bool


class InfoResponse(BaseModel):
    models: list[ModelInfo]
    limits: dict[str, Any]
    remote_urls: bool


# --- OpenAI-compatible chat -----------------------------------------------------------------------


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(description="data:image/...;base64,... (or http(s) if the server allows).")
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(description='"text" or "image_url"; other parts are ignored.')
    text: str | None = None
    image_url: ImageURL | str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[ContentPart] | None = None


class ChatStreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(
        False, description="End the stream with a chunk with no choices and the `usage`."
    )


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = Field(False, description="Send the answer as SSE chunks while it is generated.")
    stream_options: ChatStreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(
        None, ge=0, le=2, description="0 or unset: the model's own decoding; > 0: sampling."
    )
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Choices: n > 1 samples independent answers (needs temperature > 0; the "
        "server caps it at max_beams; not with stream).",
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    finish_reason: str
    logprobs: None = None


class ChatUsage(BaseModel):
    prompt_tokens: int = Field(
        description="Tokens of the model's text input (prompt or question, special tokens "
        "included; pixels are not counted), summed over the images."
    )
    completion_tokens: int = Field(
        description="Tokens generated (end of text included), summed over images and choices."
    )
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streamed answer (`data: {...}`); the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(
        description="Empty only in the last chunk, which then carries `usage`."
    )
    usage: ChatUsage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "im2text"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
