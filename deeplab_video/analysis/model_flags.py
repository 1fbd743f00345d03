"""The flags every analysis CLI shares: which experiment, which weights, how many videos."""

from absl import flags


def define_model_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines --config_file (required), --checkpoint and --num_sequences.

    Only an entry point calls this, so importing an analysis module as a library never
    clashes with another CLI's flags.
    """
    flags.DEFINE_string("config_file", None, "Experiment textproto.", flag_values=flag_values)
    flags.DEFINE_string(
        "checkpoint",
        None,
        "Checkpoint prefix or directory (default: freshly initialised weights).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_sequences",
        None,
        "Sequences to use (default: the config's num_eval_sequences; -1: all).",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("config_file", flag_values=flag_values)
