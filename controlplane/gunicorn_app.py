"""`controlplane serve`: gunicorn, configured by deploy/gunicorn.conf.py, in-process."""

from pathlib import Path

from gunicorn.app.base import Application

CONFIG_FILE = Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"


class ControlPlaneServer(Application):
    # Application, not BaseApplication: only Application can read a config file. Our own
    # load_config replaces its command-line parsing (the argv is controlplane's, not gunicorn's).
    def __init__(self, options):
        self.options = options
        super().__init__()

    def load_config(self):
        if CONFIG_FILE.exists():
            self.load_config_from_file(str(CONFIG_FILE))
        for key, value in self.options.items():
            if value is not None:
                self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app()


def serve(bind, workers=None):
    ControlPlaneServer({"bind": [bind], "workers": workers}).run()
