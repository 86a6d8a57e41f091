"""Which models a notebook trains on which device."""

from dfa_lib.experiment import models_to_train


def test_gpu_models_join_only_off_the_cpu():
    assert models_to_train("lcnn,ifd_logreg", "lcnn_phase", "cpu") == (["lcnn", "ifd_logreg"], [])
    assert models_to_train("lcnn,ifd_logreg", "lcnn_phase", "cuda") == (
        ["lcnn", "ifd_logreg", "lcnn_phase"],
        ["lcnn_phase"],
    )
    assert models_to_train("lcnn", "lcnn_phase", "mps")[1] == ["lcnn_phase"]


def test_names_already_listed_or_empty_are_not_added_twice():
    assert models_to_train("lcnn_phase,lcnn", "lcnn_phase,,lcnn_phase", "cuda") == (
        ["lcnn_phase", "lcnn"],
        [],
    )
    assert models_to_train("", "", "cuda") == ([], [])
    assert models_to_train("ifd_logreg", "", "cuda") == (["ifd_logreg"], [])
