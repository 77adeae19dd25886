"""``scratchrnn train``'s flags for what came after the book's LSTM (docs/regularization.md): layer
normalisation and AWD-LSTM's regularisers, each a field of ``model.ModelSettings`` (and so of a
run's checkpoints). Kept apart from ``train`` so that the command's module stays about the run."""
from __future__ import annotations

from ..model import ModelSettings
from .common import fraction, non_negative_float

# ModelSettings field -> its flag, for the core's messages (train._in_flag_names)
FLAG_NAMES = {"layer_norm": "--layer-norm", "weight_dropout": "--weight-dropout", "input_dropout": "--input-dropout",
              "hidden_dropout": "--hidden-dropout", "output_dropout": "--output-dropout",
              "embed_dropout": "--embed-dropout", "tie_weights": "--tie-weights", "activation_reg": "--ar",
              "temporal_reg": "--tar", "embedding 'learned'": "--embedding learned"}


# each flag's dest -> its ModelSettings field (what --init-from takes from its checkpoint)
MODEL_OPTIONS = {"layer_norm": "layer_norm", "weight_dropout": "weight_dropout", "input_dropout": "input_dropout",
                 "hidden_dropout": "hidden_dropout", "output_dropout": "output_dropout",
                 "embed_dropout": "embed_dropout", "tie_weights": "tie_weights", "ar": "activation_reg",
                 "tar": "temporal_reg"}


def add_arguments(parser) -> None:
    """The flags, in a group of their own."""
    group = parser.add_argument_group(
        "beyond the book's cells (docs/regularization.md)",
        "Layer normalisation (Ba, Kiros and Hinton 2016) and the regularisers of AWD-LSTM (Merity, Keskar "
        "and Socher 2017), each off unless given. Every mask is drawn as --dropout's are: the same seed "
        "gives every backend and any --nproc the same masks, and --resume continues them.")
    group.add_argument("--layer-norm", action="store_true",
                       help="layer-normalised gru or lstm cells: each gate's input and recurrent terms (and the "
                            "lstm's cell) normalised over the hidden units, with learned gains (numpy and torch "
                            "backends; never the compiled loops)")
    group.add_argument("--weight-dropout", type=fraction, default=ModelSettings.weight_dropout, metavar="P",
                       help="DropConnect on every layer's recurrent weights (W_hh): one mask per minibatch")
    group.add_argument("--input-dropout", type=fraction, default=ModelSettings.input_dropout, metavar="P",
                       help="locked (variational) dropout on the embedded inputs: one mask per sequence, the "
                            "same at every step (needs --embedding learned)")
    group.add_argument("--hidden-dropout", type=fraction, default=ModelSettings.hidden_dropout, metavar="P",
                       help="locked dropout between layers")
    group.add_argument("--output-dropout", type=fraction, default=ModelSettings.output_dropout, metavar="P",
                       help="locked dropout on the last layer's output, before the output layer")
    group.add_argument("--embed-dropout", type=fraction, default=ModelSettings.embed_dropout, metavar="P",
                       help="drop whole characters: rows of the embedding, the same for the whole minibatch "
                            "(needs --embedding learned)")
    group.add_argument("--tie-weights", action="store_true",
                       help="the output layer reuses the embedding (through a projection where --hidden differs "
                            "from --embed-dim; needs --embedding learned)")
    group.add_argument("--ar", type=non_negative_float, default=ModelSettings.activation_reg, metavar="ALPHA",
                       help="activation regularisation: ALPHA times the mean square of the last layer's "
                            "(dropped) output, added to the objective while training")
    group.add_argument("--tar", type=non_negative_float, default=ModelSettings.temporal_reg, metavar="BETA",
                       help="temporal activation regularisation: BETA times the mean square of h_t - h_{t-1} "
                            "of the last layer")


def settings(args) -> dict:
    """The ModelSettings fields the flags give."""
    return {"layer_norm": args.layer_norm, "weight_dropout": args.weight_dropout, "input_dropout": args.input_dropout,
            "hidden_dropout": args.hidden_dropout, "output_dropout": args.output_dropout,
            "embed_dropout": args.embed_dropout, "tie_weights": args.tie_weights, "activation_reg": args.ar,
            "temporal_reg": args.tar}
