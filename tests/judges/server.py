"""A real OpenAI-compatible ``/v1/chat/completions`` server on loopback, owned by the tests.

Standard library only (``ThreadingHTTPServer``, HTTP/1.1 keep-alive). ``score(messages)``
decides the probabilities of the answer tokens; the reply carries them as ``logprobs`` /
``top_logprobs`` of the one generated token (a token with probability 0 is absent, like a token
outside a real server's top list). Knobs: ``model`` (any other name → 404 as vLLM and OpenAI
answer), ``storm`` (after the first answer, the next N requests get 429), ``delay_s`` (per
request), ``logprobs`` (False: content only). Every accepted request's user message is
recorded in ``asked``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Scores = Callable[[list[dict]], dict[str, float]]


def hashed_scores(messages: list[dict]) -> dict[str, float]:
    """Deterministic scripted probabilities from the question's text."""
    digest = hashlib.sha256(messages[-1]["content"].encode()).digest()
    weights = [digest[0] + 1, digest[1] + 1, digest[2] + 1]
    total = sum(weights)
    return {"A": weights[0] / total, "B": weights[1] / total, "NA": weights[2] / total}


def scripted_text(messages: list[dict]) -> str:
    """Deterministic scripted text for a conversation (its last message, hashed)."""
    last = messages[-1]["content"]
    return f"Scripted {hashlib.sha256(last.encode()).hexdigest()[:8]}: {last[:30]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: JudgeServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        srv = self.server
        if self.path != "/v1/chat/completions":
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            return self._reply(401, {"error": {"message": "Incorrect API key provided."}})
        if request.get("model") != srv.model:
            message = f"The model `{request.get('model')}` does not exist."
            return self._reply(404, {"error": {"message": message, "type": "NotFoundError"}})
        with srv.lock:
            stormy = srv.storm > 0 and bool(srv.asked)  # the probe passes first
            if stormy:
                srv.storm -= 1
                srv.refused += 1
        if stormy:
            return self._reply(429, {"error": {"message": "rate limited"}})
        messages = request["messages"]
        with srv.lock:
            srv.asked.append(messages[-1]["content"])
        if srv.delay_s:
            time.sleep(srv.delay_s)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        if not request.get("logprobs") and int(request.get("max_tokens") or 1) > 1:
            text = srv.write(messages)
            return self._reply(200, _completion(srv.model, text, prompt_tokens, len(text.split())))
        probs = srv.score(messages)
        best = max(probs, key=probs.get)
        top = [
            {"token": token, "logprob": math.log(p), "bytes": list(token.encode())}
            for token, p in sorted(probs.items(), key=lambda kv: -kv[1])
            if p > 0
        ][: int(request.get("top_logprobs") or 0)]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": best},
            "finish_reason": "length",
        }
        if srv.logprobs and request.get("logprobs"):
            token = {"token": best, "logprob": math.log(probs[best] or 1e-300), "top_logprobs": top}
            choice["logprobs"] = {"content": [token]}
        self._reply(200, {**_completion(srv.model, best, prompt_tokens, 1), "choices": [choice]})


def _completion(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        score: Scores = hashed_scores,
        model: str = "judge-model",
        write: Callable[[list[dict]], str] = scripted_text,
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.score = score
        self.write = write
        self.model = model
        self.storm = 0
        self.refused = 0
        self.delay_s = 0.0
        self.logprobs = True
        self.api_key = ""  # when set, requests need "Authorization: Bearer <key>"
        self.asked: list[str] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        """A client that went away (a killed job) or a scripted failure (``score`` raising
        RuntimeError: the connection closes unanswered) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], ConnectionError | RuntimeError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


if __name__ == "__main__":  # ``python tests/judges/server.py``: serve until killed (benchmarks)
    with JudgeServer() as running:
        print(running.base_url, flush=True)
        running.thread.join()
