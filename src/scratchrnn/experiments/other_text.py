"""Exercise 2 (last part): the same model on another text, and each model on the other's text."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import load_corpus, split_heldout
from ..errors import UserError
from ..generation import Decoding, default_prefix, encode_prefix, generate_ids, vocab_text
from ..training import evaluate_perplexity
from .harness import Context, train_run
from .report import Report, perplexity_panels, plot_panels


def run(ctx: Context) -> tuple[Report, dict]:
    """Exercise 2 (last part): the same model on another text (--data), and each model on the other text."""
    if ctx.data is None:
        raise UserError(f"the {ctx.name} experiment needs --data PATH: the text to compare with the "
                        f"Time Machine")
    scale = ctx.scale
    reference = load_corpus(None, scale.max_tokens, cleaning="chapter")
    other = ctx.corpus()
    texts = {"Time Machine": reference, Path(ctx.data).name: other}
    runs, held = {}, {}
    for name, (corpus, vocab) in texts.items():
        train_tokens, held_out = split_heldout(corpus, scale.val_fraction)
        if len(held_out) < scale.batch_size + 1:
            raise UserError(f"{name}: {len(corpus)} tokens leave too little held-out text; "
                            f"give a longer text")
        held[name] = (held_out, vocab)
        runs[name] = train_run(ctx, ctx.base_spec(f"trained on {name}", 150), train_tokens, vocab, held_out)

    report = Report("Another text",
                    "Exercise 2 (part): how well does the model work on other books, e.g. another "
                    "book by H. G. Wells?")
    report.text(f"Setup ({'quick' if ctx.quick else 'full'} run, backend `{ctx.backend}`): the first "
                f"{scale.max_tokens} character tokens of each text, the chapter's cleaning (letters "
                f"and spaces, lower case), {ctx.hidden} hidden units, the last "
                f"{scale.val_fraction:.0%} held out. Cross rows read one text's held-out part with the "
                "other text's model (characters mapped by identity; characters the model never saw "
                "count as <unk>).")
    rows = []
    cross = {}
    for model_name, outcome in runs.items():
        model_vocab = texts[model_name][1]
        for text_name, (held_out, text_vocab) in held.items():
            mapped = np.asarray([model_vocab[text_vocab.idx_to_token[int(i)]] for i in held_out],
                                dtype=np.int64)
            unknown = float(np.mean(mapped == model_vocab.unk))
            ppl = (evaluate_perplexity(outcome.backend, mapped, scale.batch_size, scale.num_steps)
                   if not outcome.diverged else float("nan"))
            cross[f"{model_name} -> {text_name}"] = ppl
            rows.append([model_name, text_name, ppl, f"{unknown:.1%}",
                         outcome.final_perplexity, outcome.status()])
    report.table(["model trained on", "held-out text", "perplexity", "unknown characters",
                  "final train perplexity", "status"], rows)
    samples = []
    for name, outcome in runs.items():
        corpus, vocab = texts[name]
        prefix = default_prefix(corpus, vocab, bundled=texts[name] is reference)
        ids = generate_ids(outcome.backend, [encode_prefix(prefix, vocab)], 60, Decoding("greedy"))
        samples.append([name, vocab_text(vocab, ids[0])])
    report.text("Greedy continuations:")
    report.table(["model", "text"], samples)
    outcomes = list(runs.values())
    figure = plot_panels(ctx.out / "other_text.png", perplexity_panels(outcomes, validation=True))
    report.figure(figure, "Each model on its own text")
    return report, {"cross_perplexity": cross, "samples": samples, "runs": [o.to_dict() for o in outcomes]}
