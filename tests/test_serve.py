"""``scratchrnn serve`` through a real HTTP socket on 127.0.0.1: the official ``openai`` client, streaming,
every bad request, many concurrent streams with clients that go away, the stream limit, and the command."""
import json
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from serve_helpers import ServerThread, run_cli, train_run, wait_until  # noqa: E402

from scratchrnn import backends, cli  # noqa: E402
from scratchrnn.generation import Decoding, TokenPicker, generate_ids, vocab_text  # noqa: E402
from scratchrnn.serving import batcher as batching  # noqa: E402
from scratchrnn.serving.app import create_app  # noqa: E402
from scratchrnn.serving.batcher import Limits  # noqa: E402
from scratchrnn.serving.served import ServedRun  # noqa: E402

PROMPTS = ["The time", '"Hello,', "He looked", "in the lab", "Where", "she said. ", "The trav", "(briefly"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(tmp_path_factory)


@pytest.fixture(scope="module")
def server(run):
    served = ServedRun.load(run)
    srv = ServerThread(create_app(served, Limits(max_streams=128, max_body_bytes=64 << 10)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def _post(server, body, **kwargs):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.url}/v1/completions", content=content, timeout=30,
                      headers={"Content-Type": "application/json"}, **kwargs)


def _events(response) -> list[dict]:
    """The JSON events of a server-sent event stream, checking it ends with [DONE]."""
    lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


# -- the openai client and the command line agree -------------------------------------------------------------
def test_models_lists_the_run_and_the_docs_are_served(server, client):
    assert [m.id for m in client.models.list().data] == ["lstm"]
    assert client.models.retrieve("lstm").id == "lstm"
    assert httpx.get(f"{server.url}/docs", timeout=10).status_code == 200
    paths = httpx.get(f"{server.url}/openapi.json", timeout=10).json()["paths"]
    assert "/v1/completions" in paths and "/v1/models" in paths


def test_greedy_text_from_the_openai_client_is_scratchrnn_generates(run, client):
    for prompt in PROMPTS[:3]:
        cli_text = run_cli("generate", run, "--prefix", prompt, "--num-chars", 120).stdout[:-1]   # its newline
        completion = client.completions.create(model="lstm", prompt=prompt, max_tokens=120, temperature=0)
        assert prompt + completion.choices[0].text == cli_text
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.completion_tokens == 120 and completion.usage.prompt_tokens == len(prompt)


def test_streaming_equals_not_streaming_for_every_choice(client):
    kwargs = dict(model="lstm", prompt=PROMPTS[:2], max_tokens=150, temperature=1.0, top_p=0.9, n=3, seed=11)
    whole = client.completions.create(**kwargs)
    assert len(whole.choices) == 6 and [c.index for c in whole.choices] == list(range(6))
    pieces, finishes = [""] * 6, [None] * 6
    for chunk in client.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            pieces[choice.index] += choice.text
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert pieces == [c.text for c in whole.choices]
    assert finishes == ["length"] * 6
    # a seed fixes the text; the choices of one prompt differ from each other
    assert client.completions.create(**kwargs).choices[4].text == whole.choices[4].text
    assert len({c.text for c in whole.choices[:3]}) == 3


def test_a_seeded_choice_draws_as_generate_with_that_seed_in_float64(run):
    """Choice 0 with seed S draws the numbers ``TokenPicker(Decoding(seed=S))`` draws; in float64 the
    batched steps and ``generate_ids`` agree to the last character."""
    served = ServedRun.load(run)
    served.backend = backends.create("numpy", served.checkpoint.params, served.checkpoint.model, dtype="float64")
    srv = ServerThread(create_app(served))
    try:
        body = {"model": "lstm", "prompt": PROMPTS[3], "max_tokens": 200, "temperature": 0.7, "seed": 5}
        text = _post(srv, body).json()["choices"][0]["text"]
    finally:
        srv.stop()
    ids = served.encode(PROMPTS[3])
    expected = generate_ids(served.backend, [ids], 200, Decoding("sample", 0.7, seed=5))[0][len(ids):]
    assert text == vocab_text(served.checkpoint.vocab, expected)


def test_stop_strings_end_the_text_before_them_streaming_or_not(client):
    kwargs = dict(model="lstm", prompt="The time", max_tokens=300, temperature=1.0, seed=3)
    free = client.completions.create(**kwargs).choices[0].text
    stop = next(word for word in ("said", "the", "e") if word in free)
    stopped = client.completions.create(stop=[stop, "zzz"], **kwargs).choices[0]
    assert stopped.text == free[:free.index(stop)] and stopped.finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(stop=[stop, "zzz"], stream=True, **kwargs)
                       if c.choices)
    assert streamed == stopped.text


def test_zero_tokens_and_usage_in_a_stream(server):
    assert _post(server, {"model": "lstm", "prompt": "The", "max_tokens": 0}).json()["choices"][0] == \
        {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}
    body = {"model": "lstm", "prompt": "The", "max_tokens": 7, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as response:
        events = _events(response)
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    assert response.headers["content-type"].startswith("text/event-stream")


def test_pick_tokens_picks_what_each_rows_own_picker_would():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (9, 12)).astype(np.float32)
    decodings = [Decoding("greedy"), Decoding("sample", 1.0, seed=1), Decoding("sample", 0.5, top_p=0.8, seed=2),
                 Decoding("sample", 1.0, seed=3), Decoding("sample", 2.0, top_k=3, seed=4)] + \
                [Decoding("sample", 1.0, seed=10 + k) for k in range(4)]
    batched = [TokenPicker(d) for d in decodings]
    alone = [TokenPicker(d) for d in decodings]
    for _ in range(30):
        expected = [int(p(logits[i:i + 1])[0]) for i, p in enumerate(alone)]
        assert batching.pick_tokens(logits, batched).tolist() == expected


# -- every bad request gets its 4xx, and the server goes on -----------------------------------------------------
BAD_REQUESTS = [
    ("malformed JSON", b'{"model": "lstm", "prompt": ', 400, None),
    ("not an object", b"[1, 2]", 400, None),
    ("a character outside the vocabulary", {"prompt": "caf\u00e9 \u2603"}, 400, "prompt"),
    ("an empty prompt", {"prompt": ""}, 400, "prompt"),
    ("an empty list of prompts", {"prompt": []}, 400, "prompt"),
    ("token ids for a prompt", {"prompt": [1, 2, 3]}, 400, "prompt"),
    ("negative max_tokens", {"max_tokens": -1}, 400, "max_tokens"),
    ("huge max_tokens", {"max_tokens": 10 ** 9}, 400, "max_tokens"),
    ("max_tokens not an integer", {"max_tokens": "12"}, 400, "max_tokens"),
    ("temperature below 0", {"temperature": -0.5}, 400, "temperature"),
    ("top_p 0", {"top_p": 0}, 400, "top_p"),
    ("top_p above 1", {"top_p": 1.01}, 400, "top_p"),
    ("too many choices", {"n": 10_000}, 400, "n"),
    ("n of 0", {"n": 0}, 400, "n"),
    ("a negative seed", {"seed": -3}, 400, "seed"),
    ("an empty stop string", {"stop": [""]}, 400, "stop"),
    ("too many stop strings", {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("an option OpenAI lacks", {"max_token": 5}, 400, "max_token"),
    ("log-probabilities", {"logprobs": 3}, 400, "logprobs"),
    ("no model", {"model": None}, 400, "model"),
    ("another model", {"model": "gpt-4"}, 404, "model"),
    ("a body too large", {"prompt": "a" * (70 << 10)}, 413, None),
]


@pytest.mark.parametrize("what, change, status, param", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_a_bad_request_gets_an_openai_error_and_the_server_answers_the_next(server, what, change, status, param):
    if isinstance(change, bytes):
        body = change
    else:
        body = {"model": "lstm", "prompt": "The", "max_tokens": 5, **change}
        body = {k: v for k, v in body.items() if v is not None}
    response = _post(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    after = _post(server, {"model": "lstm", "prompt": "The", "max_tokens": 5})
    assert after.status_code == 200 and len(after.json()["choices"][0]["text"]) == 5


def test_the_openai_client_raises_its_own_errors(client):
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model="lstm", prompt="\u2603", max_tokens=3)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="The", max_tokens=3)


# -- many streams at once ----------------------------------------------------------------------------------------
def test_64_concurrent_streams_end_correctly_and_leavers_free_their_slots(server):
    results, errors = {}, []
    leavers = set(range(0, 64, 11))                 # 6 clients that go away after their first piece

    def one(k):
        body = {"model": "lstm", "prompt": PROMPTS[k % len(PROMPTS)], "max_tokens": 400, "temperature": 1.0,
                "seed": k, "stream": True}
        try:
            with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as response:
                text, finish = "", None
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    choice = json.loads(line[6:])["choices"][0]
                    text += choice["text"]
                    finish = choice["finish_reason"] or finish
                    if k in leavers and text:
                        return                       # closes the connection mid-stream
                results[k] = (text, finish)
        except Exception as err:                     # reported below, in the test's thread
            errors.append((k, repr(err)))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == [k for k in range(64) if k not in leavers]
    for k, (text, finish) in results.items():
        assert len(text) == 400 and finish == "length", (k, len(text), finish)
    assert len({text for text, _ in results.values()}) == len(results)       # each its own seed
    assert wait_until(lambda: server.batcher.active_streams == 0), server.batcher.active_streams


def test_over_the_stream_limit_a_request_gets_429_until_slots_free(run):
    served = ServedRun.load(run)
    srv = ServerThread(create_app(served, Limits(max_streams=4)))
    # the worker waits at its first forward call until the gate opens: the first request's streams hold
    # their slots for as long as the test needs
    gate, forward = threading.Event(), served.backend.forward
    served.backend.forward = lambda X, state: gate.wait(60) and forward(X, state)
    try:
        hold = {"model": "lstm", "prompt": "The", "max_tokens": 4096, "n": 3, "stream": True, "temperature": 1.0}
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=hold, timeout=30) as held:
            assert held.status_code == 200 and srv.batcher.active_streams == 3
            refused = _post(srv, {"model": "lstm", "prompt": "The", "max_tokens": 5, "n": 2})
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            gate.set()
            assert _post(srv, {"model": "lstm", "prompt": "The", "max_tokens": 5}).status_code == 200
            assert next(line for line in held.iter_lines() if line).startswith("data: {")
        # the client that held them has gone: its slots come back
        assert wait_until(lambda: srv.batcher.active_streams == 0)
        assert _post(srv, {"model": "lstm", "prompt": "The", "max_tokens": 5, "n": 4}).status_code == 200
        too_many = _post(srv, {"model": "lstm", "prompt": ["The", "He"], "max_tokens": 5, "n": 3})
        assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "n"     # could never fit
    finally:
        gate.set()
        srv.stop()


def test_a_client_that_stops_waiting_for_a_whole_completion_frees_its_slot(run):
    served = ServedRun.load(run)
    srv = ServerThread(create_app(served))
    gate, forward = threading.Event(), served.backend.forward
    served.backend.forward = lambda X, state: gate.wait(60) and forward(X, state)
    try:
        with pytest.raises(httpx.ReadTimeout):       # gives up, and closes its connection
            httpx.post(f"{srv.url}/v1/completions", json={"model": "lstm", "prompt": "The", "max_tokens": 4096},
                       timeout=httpx.Timeout(30, read=0.5))
        # the server notices (the worker is still held at its first forward call) ...
        assert wait_until(lambda: all(job.cancelled for job in list(srv.batcher._owner.values())))
        gate.set()
        # ... and the stream leaves after a step or two, not 4,096
        assert wait_until(lambda: srv.batcher.active_streams == 0)
        assert srv.batcher.steps < 5
    finally:
        gate.set()
        srv.stop()


# -- the command ---------------------------------------------------------------------------------------------
def _start_serve(*args):
    return subprocess.Popen([sys.executable, "-m", "scratchrnn", "serve", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_prints_its_url_serves_and_stops_cleanly_on_ctrl_c(run):
    proc = _start_serve(run, "--port", 0)
    try:
        line = proc.stdout.readline()
        assert line.startswith("scratchrnn: serving lstm") and "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        assert httpx.get(f"{url}v1/models", timeout=10).json()["data"][0]["id"] == "lstm"
        assert "scratchrnn explorer" in httpx.get(url, timeout=10).text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "scratchrnn: server stopped"


def test_serve_warns_when_it_listens_beyond_loopback(run):
    proc = _start_serve(run, "--host", "0.0.0.0", "--port", 0)
    try:
        assert "serving lstm" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0, not a loopback address" in err


@pytest.mark.parametrize("args, fragment", [
    (["nowhere"], "checkpoint not found"),
    (["RUN", "--port", "70000"], "--port"),
    (["RUN", "--port", "PORT_IN_USE"], "cannot listen on 127.0.0.1"),
])
def test_serve_refuses_in_one_line(run, args, fragment):
    with __import__("socket").socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        argv = [str(run) if a == "RUN" else port if a == "PORT_IN_USE" else a for a in args]
        proc = run_cli("serve", *argv, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr


def test_serve_without_the_extra_names_the_install_line(run, monkeypatch, capsys):
    import importlib.util

    from scratchrnn import serving

    real = importlib.util.find_spec
    monkeypatch.setattr(serving.importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert cli.main(["serve", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install '.[serve]'" in err and "uvicorn" in err


def test_the_worker_survives_a_failing_step(run, monkeypatch):
    """A step that fails (here a full disk, injected) fails the requests it was decoding, frees their
    slots, and the next request is served."""
    srv = ServerThread(create_app(ServedRun.load(run)))
    monkeypatch.setenv("SCRATCHRNN_FAULT", "serve.step:after-1-enospc")
    try:
        failed = _post(srv, {"model": "lstm", "prompt": "The", "max_tokens": 5})
        assert failed.status_code == 503 and "No space left" in failed.json()["error"]["message"]
        assert failed.json()["error"]["type"] == "server_error"
        assert wait_until(lambda: srv.batcher.active_streams == 0)
        assert _post(srv, {"model": "lstm", "prompt": "The", "max_tokens": 5}).status_code == 200
    finally:
        srv.stop()
