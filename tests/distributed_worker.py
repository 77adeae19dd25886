"""Run by tests/test_distributed.py under torchrun (2 ranks on gloo): train every case of ``CASES`` on
this rank's rows with the gradients averaged over the ranks, and let rank 0 write what each gave to
the .npz file named on the command line. ``train_case`` with the world of one is the reference the
test computes in its own process."""
import sys

import numpy as np

from scratchrnn import backends
from scratchrnn.data import SeqDataLoader, load_corpus
from scratchrnn.distributed import SINGLE, GradientAverager, init_world, shutdown_world
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.training import TrainConfig, train

REGULARIZED = {"num_layers": 2, "embedding": "learned", "embed_dim": 6, "weight_dropout": 0.3, "input_dropout": 0.2,
               "hidden_dropout": 0.3, "output_dropout": 0.3, "embed_dropout": 0.2, "tie_weights": True,
               "activation_reg": 1.0, "temporal_reg": 1.0}
# (backend, cell, optimizer, lr, sampling[, model options]): every cell type with SGD and Adam,
# sequential and random
CASES = [("torch", "rnn", "sgd", 1.0, "sequential"), ("torch", "rnn", "adam", 0.01, "sequential"),
         ("torch", "rnn", "sgd", 1.0, "random"), ("torch", "rnn", "adam", 0.01, "random"),
         ("torch", "gru", "sgd", 1.0, "sequential"), ("torch", "gru", "adam", 0.01, "random"),
         ("torch", "lstm", "adam", 0.01, "sequential"), ("torch", "lstm", "sgd", 1.0, "random"),
         ("numpy", "rnn", "adam", 0.01, "sequential"), ("numpy", "lstm", "sgd", 1.0, "sequential"),
         # two layers with dropout: each rank applies its rows of the masks one process draws
         ("torch", "lstm", "adam", 0.01, "sequential", {"num_layers": 2, "dropout": 0.3}),
         ("torch", "gru", "sgd", 1.0, "random", {"num_layers": 2, "dropout": 0.3}),
         ("numpy", "gru", "sgd", 1.0, "sequential", {"num_layers": 2, "dropout": 0.3}),
         # every mask of docs/regularization.md: rows of the locked ones, the whole weight and embedding ones
         ("torch", "lstm", "adam", 0.01, "random", REGULARIZED),
         ("numpy", "gru", "sgd", 1.0, "sequential", REGULARIZED)]
TOKENS, BATCH, STEPS, HIDDEN, EPOCHS = 400, 4, 5, 8, 2


def train_case(case, world=SINGLE):
    """Per-epoch training and held-out perplexities and the final weights of one case."""
    backend_name, cell, optimizer, lr, sampling, *extra = case
    corpus, vocab = load_corpus(None, 2 * TOKENS)
    text, heldout = corpus[:TOKENS], np.asarray(corpus[TOKENS:], dtype=np.int64)
    model = ModelConfig(len(vocab), HIDDEN, cell=cell, **(extra[0] if extra else {}))
    options = {"dropout_seed": 11} if model.draws_masks else {}
    backend = backends.create(backend_name, init_params(model, 3), model, dtype="float64", **options)
    loader = SeqDataLoader(text, BATCH, STEPS, sampling, seed=5, rank=world.rank, world_size=world.size)
    config = TrainConfig(epochs=EPOCHS, lr=lr, batch_size=BATCH, num_steps=STEPS, sampling=sampling,
                         optimizer=optimizer, eval_every=1)
    reduce = GradientAverager(world) if world.distributed else None
    result = train(backend, loader, config, validation=heldout, world=world, reduce=reduce)
    return ([e.perplexity for e in result.epochs], [e.val_perplexity for e in result.epochs],
            backend.get_params())


if __name__ == "__main__":
    world = init_world("torch")
    out = {}
    for i, case in enumerate(CASES):
        perplexities, heldout, params = train_case(case, world)
        # every rank must hold the same weights: gather them all to rank 0
        gathered = world.gather_rows(tuple(params[name][None] for name in sorted(params)))
        if world.is_main:
            out[f"{i}/train"], out[f"{i}/val"] = np.array(perplexities), np.array(heldout)
            for name, stacked in zip(sorted(params), gathered):
                out[f"{i}/{name}"] = stacked             # (ranks, ...) in rank order
    if world.is_main:
        np.savez(sys.argv[1], **out)
    shutdown_world()
