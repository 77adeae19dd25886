"""Exercise 3: sample instead of taking the argmax; temperature (the exercise's alpha), top-k, top-p."""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..generation import Decoding, default_prefix, encode_prefix, generate_ids, vocab_text
from ..model import log_softmax
from .formatting import fmt
from .harness import Context, train_run
from .report import Panel, Report, plot_panels, setup_line


SAMPLING_DECODERS = [
    ("greedy", Decoding("greedy")),
    ("alpha=4 (T=0.25)", Decoding("sample", 0.25)),
    ("alpha=2 (T=0.5)", Decoding("sample", 0.5)),
    ("alpha=1.25 (T=0.8)", Decoding("sample", 0.8)),
    ("alpha=1 (T=1, plain sampling)", Decoding("sample", 1.0)),
    ("alpha=0.67 (T=1.5)", Decoding("sample", 1.5)),
    ("top-k 3, T=1", Decoding("sample", 1.0, top_k=3)),
    ("top-p 0.9, T=1", Decoding("sample", 1.0, top_p=0.9)),
]


def continuation_perplexity(backend, sequences: np.ndarray, prefix_len: int) -> float:
    """Perplexity the model itself (at T = 1) assigns to the generated part of each sequence."""
    logits, _ = backend.forward(sequences[:, :-1], backend.begin_state(sequences.shape[0]))
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64))
    targets = sequences[:, 1:].T.reshape(-1)                       # time-major like the logits
    picked = log_probs[np.arange(targets.size), targets].reshape(sequences.shape[1] - 1, -1)
    generated = picked[prefix_len - 1:]                            # row t predicts token t + 1
    return float(np.exp(-generated.mean()))


def text_statistics(texts: Sequence[str], prefix: str, known_words: set[str]) -> tuple[float, float]:
    """(share of generated words that occur in the training text, share of distinct words).

    The words that overlap the prefix and the last, possibly cut-off word are left out.
    """
    skip = len(prefix.split())
    words = []
    for text in texts:
        split = text.split()
        words += split[skip:-1]
    if not words:
        return float("nan"), float("nan")
    known = sum(w in known_words for w in words) / len(words)
    return known, len(set(words)) / len(words)


def run(ctx: Context) -> tuple[Report, dict]:
    """Exercise 3: sample instead of taking the argmax; bias towards likely characters with alpha > 1."""
    from ..plotting import plot_perplexity

    corpus, vocab = ctx.corpus()
    spec = ctx.base_spec("model", 200)
    outcome = train_run(ctx, spec, corpus, vocab)
    backend = outcome.backend
    prefix = default_prefix(corpus, vocab, bundled=ctx.data is None)
    prefix_ids = encode_prefix(prefix, vocab)
    known_words = set(vocab_text(vocab, corpus).split())
    n, k = ctx.scale.num_chars, ctx.scale.samples
    rows, stats = [], []
    for label, decoding in SAMPLING_DECODERS:
        seeded = replace(decoding, seed=ctx.seed)
        ids = generate_ids(backend, [prefix_ids] * k, n, seeded)
        texts = [vocab_text(vocab, seq) for seq in ids]
        ppl = continuation_perplexity(backend, np.asarray(ids, dtype=np.int64), len(prefix_ids))
        known, distinct = text_statistics(texts, prefix, known_words)
        stats.append({"decoder": label, "strategy": decoding.strategy,
                      "temperature": decoding.temperature, "top_k": decoding.top_k,
                      "top_p": decoding.top_p, "perplexity_of_text": ppl,
                      "book_words": known, "distinct_words": distinct, "texts": texts})
        rows.append([label, ppl, f"{known:.0%}" if math.isfinite(known) else "-",
                     f"{distinct:.0%}" if math.isfinite(distinct) else "-", texts[0]])

    # temperature -> 0 (alpha -> infinity) is greedy decoding
    greedy_ids = generate_ids(backend, [prefix_ids], n, Decoding("greedy"))
    cold_ids = generate_ids(backend, [prefix_ids], n, Decoding("sample", 1e-6, seed=ctx.seed))
    cold_is_greedy = greedy_ids == cold_ids

    report = Report("Sampling instead of greedy decoding",
                    "Exercise 3: modify the prediction function to sample rather than pick the most "
                    "likely next character. What happens? Bias the model towards more likely outputs, "
                    "e.g. by sampling from q(x_t | ...) proportional to P(x_t | ...)^alpha for alpha > 1.")
    report.text(setup_line(ctx, len(corpus), vocab) + f" One model ({spec.describe()}, "
                f"{spec.epochs} epochs, final training perplexity {fmt(outcome.final_perplexity)}), "
                f"{k} continuations of {n} characters after '{prefix}' per decoder, seed {ctx.seed}. "
                "q proportional to P^alpha is softmax(logits / T) with T = 1/alpha.")
    report.table(["decoder", "perplexity of the text (model, T=1)", "words found in the book",
                  "distinct words", "first sample"], rows)
    report.text(f"Sampling with alpha = 10^6 (T = 1e-6) reproduces the greedy text: **{cold_is_greedy}**.")

    sampled = [s for s in stats if s["strategy"] == "sample" and s["top_k"] is None and s["top_p"] is None]
    greedy = stats[0]
    temps = [s["temperature"] for s in sampled]
    panels = [
        Panel("generated text under the model", "perplexity (T=1)",
              {"sampling": (temps, [s["perplexity_of_text"] for s in sampled]),
               "greedy": (temps, [greedy["perplexity_of_text"]] * len(temps))},
              xlabel="temperature T = 1/alpha", references=("greedy",)),
        Panel("words of the generated text", "share", {
            "found in the book": (temps, [s["book_words"] for s in sampled]),
            "distinct": (temps, [s["distinct_words"] for s in sampled]),
            "greedy: found in the book": (temps, [greedy["book_words"]] * len(temps)),
            "greedy: distinct": (temps, [greedy["distinct_words"]] * len(temps))},
              xlabel="temperature T = 1/alpha", logy=False,
              references=("greedy: found in the book", "greedy: distinct")),
    ]
    figure = plot_panels(ctx.out / "sampling.png", panels)
    report.figure(figure, "What the temperature does to the generated text (greedy as flat lines)")
    curve = plot_perplexity(outcome.history, ctx.out / "training", f"model used for sampling ({spec.label})")
    report.figure(curve[0], "Training perplexity of the model that generates")
    results = {"prefix": prefix, "cold_sampling_equals_greedy": cold_is_greedy, "decoders": stats,
               "run": outcome.to_dict()}
    return report, results
