"""Shared test settings."""

from hypothesis import HealthCheck, settings

settings.register_profile("edge_eas", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edge_eas")


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_state(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Tests never read or fill the user's ~/.cache/edge_eas (a wheel cached by an older run must
    not decide what a test sees) nor the user's measurement store: both point into this session's
    temporary directory, and every subprocess a test starts inherits that."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_EAS_CACHE", str(tmp_path_factory.mktemp("edge-eas-cache")))
        mp.setenv("EDGE_EAS_HOME", str(tmp_path_factory.mktemp("edge-eas-home")))
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real (short) digits run: supernet 3 epochs + generator 30 steps. Reused by the bundle,
    runtime, specialise and remote tests."""
    from edge_eas.generator_train import GeneratorConfig, train_generator
    from edge_eas.train import TrainConfig, train_supernet

    out = tmp_path_factory.mktemp("runs") / "digits"
    run = train_supernet(TrainConfig(epochs=3, train_generator=False), out)
    train_generator(run, GeneratorConfig(steps=30, scenarios_per_step=4, images_per_scenario=32))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory):  # type: ignore[no-untyped-def]
    from edge_eas.bundle import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "model.eas"
    export_bundle(tiny_run, out)
    return out


@pytest.fixture(scope="session")
def digits_uint8():  # type: ignore[no-untyped-def]
    """All sklearn digits as the device sees them: uint8 NCHW at native 8x8, and labels."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * 255 / 16).astype(np.uint8)[:, None], d.target
