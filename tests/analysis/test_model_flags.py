"""Tests for deeplab_video.analysis.model_flags."""

import pytest
from absl import flags

from deeplab_video.analysis import model_flags


def _defined() -> flags.FlagValues:
    flag_values = flags.FlagValues()
    model_flags.define_model_flags(flag_values)
    return flag_values


def test_defines_the_three_shared_flags_with_their_defaults():
    flag_values = _defined()
    flag_values(["prog", "--config_file=a.textproto"])
    assert flag_values.config_file == "a.textproto"
    assert flag_values.checkpoint is None
    assert flag_values.num_sequences is None


def test_config_file_is_required():
    with pytest.raises(flags.IllegalFlagValueError, match="config_file"):
        _defined()(["prog", "--num_sequences=2"])


def test_values_parse():
    flag_values = _defined()
    flag_values(["prog", "--config_file=c", "--checkpoint=/tmp/ckpt-5", "--num_sequences=-1"])
    assert (flag_values.checkpoint, flag_values.num_sequences) == ("/tmp/ckpt-5", -1)
