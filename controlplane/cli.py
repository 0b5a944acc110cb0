"""`controlplane`: database migrations, keys, secrets and the server.

Secrets printed by a command (a new API key) stand alone on the last line of standard
output, so that scripts can take them with `tail -n 1`.
"""

import argparse
import sys

from sqlalchemy import select


def _app():
    from . import create_app

    return create_app()


def _session(app):
    return app.extensions["trunkline"]["sessions"]()


def cmd_db_upgrade(args):
    from .config import load_config
    from .database import upgrade

    upgrade(load_config()["DATABASE_URL"], args.revision)
    print(f"database at {args.revision}")


def cmd_db_downgrade(args):
    from .config import load_config
    from .database import downgrade

    downgrade(load_config()["DATABASE_URL"], args.revision)
    print(f"database at {args.revision}")


def _create_key(session, role, name, reseller_id=None, trunk_number=None):
    from tenants.scope import platform_principal
    from tenants.services.api_keys import create_api_key

    principal = platform_principal("cli")
    session.info["principal"] = principal
    return create_api_key(session, principal, role=role, name=name,
                          reseller_id=reseller_id, trunk_number=trunk_number)


def _show_secret(create, describe):
    """Run `create(session)` -> (object, secret) as the CLI; print `describe(object)`, then
    the secret alone on the last line. A domain error is printed and exits 2."""
    from tenants.errors import DomainError

    app = _app()
    with _session(app) as session:
        try:
            obj, secret = create(session)
        except DomainError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
    print(describe(obj))
    print(secret)
    return 0


def cmd_api_key_create(args):
    return _show_secret(
        lambda s: _create_key(s, args.role, args.name, args.reseller_id, args.trunk_number),
        lambda key: f"created {key.role} key {key.key_id} ({key.name}); it is shown only once:")


def cmd_edge_enroll(args):
    from tenants.scope import platform_principal
    from tenants.services.edges import enroll_edge

    def enroll(session):
        principal = platform_principal("cli")
        session.info["principal"] = principal
        return enroll_edge(session, principal, name=args.name)

    return _show_secret(
        enroll, lambda edge: f"enrolled edge {edge.id} ({edge.name}); its token is shown only once:")


def cmd_init(args):
    """First start of the embedded default: migrate, then make a platform key if none."""
    from tenants.models import ApiKey, Role

    from .config import load_config
    from .database import upgrade

    upgrade(load_config()["DATABASE_URL"])
    app = _app()
    with _session(app) as session:
        exists = session.scalar(select(ApiKey.id).where(ApiKey.role == Role.PLATFORM.value,
                                                        ApiKey.revoked_at.is_(None)).limit(1))
        if exists:
            print("database ready; a platform key exists already "
                  "(`controlplane api-key create --role platform --name NAME` makes another)")
            return 0
        key, token = _create_key(session, "platform", args.name)
    print(f"database ready; first platform key {key.key_id}, shown only once:")
    print(token)
    return 0


def cmd_serve(args):
    from .gunicorn_app import serve

    serve(args.bind, workers=args.workers)


def cmd_secrets_generate_key(_args):
    from tenants.crypto import SecretBox

    print(SecretBox.generate_key())


def cmd_secrets_rotate(_args):
    from tenants.services.extensions import reencrypt_passwords

    app = _app()
    with _session(app) as session:
        count = reencrypt_passwords(session)
    print(f"re-encrypted {count} SIP passwords under the newest key")


def cmd_credentials_rehash(_args):
    from tenants.services.extensions import rehash_credentials

    app = _app()
    with _session(app) as session:
        count = rehash_credentials(session)
    print(f"recomputed the HA1 values of {count} extensions for realm {app.config['SIP_REALM']}")


def cmd_purge(_args):
    from tenants.models import utcnow
    from tenants.services import maintenance

    app = _app()
    with _session(app) as session:
        maintenance.run(session, utcnow())
    print("purged quiet failure windows, old bans and batches, expired bindings, old outbox")


def parser():
    p = argparse.ArgumentParser(prog="controlplane", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations").add_subparsers(dest="db", required=True)
    up = db.add_parser("upgrade", help="apply the migrations")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    down = db.add_parser("downgrade", help="revert migrations")
    down.add_argument("revision", nargs="?", default="base")
    down.set_defaults(func=cmd_db_downgrade)

    keys = sub.add_parser("api-key", help="API keys").add_subparsers(dest="api_key", required=True)
    create = keys.add_parser("create", help="create a key; printed alone on the last line")
    create.add_argument("--role", required=True, choices=["platform", "reseller", "tenant"])
    create.add_argument("--name", required=True)
    create.add_argument("--reseller-id", type=int)
    create.add_argument("--trunk-number")
    create.set_defaults(func=cmd_api_key_create)

    edges = sub.add_parser("edge", help="SIP edges").add_subparsers(dest="edge", required=True)
    enroll = edges.add_parser("enroll", help="enroll an edge; its token alone on the last line")
    enroll.add_argument("--name", required=True)
    enroll.set_defaults(func=cmd_edge_enroll)

    init = sub.add_parser("init", help="migrate, and create a first platform key if none exists")
    init.add_argument("--name", default="admin")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="serve the API with gunicorn")
    serve.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT")
    serve.add_argument("--workers", type=int, help="default: deploy/gunicorn.conf.py")
    serve.set_defaults(func=cmd_serve)

    secrets = sub.add_parser("secrets", help="the keys that encrypt SIP passwords") \
        .add_subparsers(dest="secrets", required=True)
    secrets.add_parser("generate-key", help="print a new key").set_defaults(
        func=cmd_secrets_generate_key)
    secrets.add_parser("rotate", help="re-encrypt every password under the first key") \
        .set_defaults(func=cmd_secrets_rotate)

    creds = sub.add_parser("credentials", help="SIP credentials") \
        .add_subparsers(dest="credentials", required=True)
    creds.add_parser("rehash", help="recompute HA1 values after a realm change") \
        .set_defaults(func=cmd_credentials_rehash)
    sub.add_parser("purge", help="forget what no longer matters (also runs by itself each minute)") \
        .set_defaults(func=cmd_purge)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
