"""The shipped serving settings: enough long-poll slots for the fleet, threads for the API."""

import runpy
from pathlib import Path

import pytest

from controlplane.config import API_THREADS, DEFAULT_THREADS, load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FLEET = 100  # edges the shipped settings are meant for


def env_example():
    lines = (DEPLOY / "controlplane.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def gunicorn_settings(monkeypatch, environ):
    for name in ("CONTROLPLANE_WORKERS", "CONTROLPLANE_THREADS"):
        monkeypatch.setenv(name, "")  # so that the undo removes what the file sets
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))


def test_the_env_example_holds_twice_the_fleet_in_long_polls(monkeypatch):
    env = env_example()
    settings = gunicorn_settings(monkeypatch, env)
    slots = load_config(env)["LONGPOLL_SLOTS"]
    # Connections spread unevenly over the workers: twice the fleet in slots.
    assert settings["workers"] * slots >= 2 * FLEET
    assert settings["threads"] - slots >= API_THREADS


def test_gunicorn_and_the_app_agree_on_the_default_threads(monkeypatch):
    settings = gunicorn_settings(monkeypatch, {})
    assert settings["threads"] == DEFAULT_THREADS and settings["worker_class"] == "gthread"
    assert load_config({})["LONGPOLL_SLOTS"] == DEFAULT_THREADS - API_THREADS


@pytest.mark.parametrize("environ", [
    {"CONTROLPLANE_THREADS": "8"},
    {"CONTROLPLANE_LONGPOLL_SLOTS": str(DEFAULT_THREADS)},
    {"CONTROLPLANE_LONGPOLL_SLOTS": "0"},
])
def test_settings_that_starve_the_api_or_the_edges_are_refused(environ):
    with pytest.raises(ValueError, match="CONTROLPLANE_"):
        load_config(environ)
