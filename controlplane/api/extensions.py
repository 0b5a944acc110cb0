import marshmallow as ma
from flask.views import MethodView

from tenants.models import ClassOfService, RingMode
from tenants.services import extensions as services

from ..auth import principal
from ..database import session
from .common import Blueprint, Enum, Regexp, Schema, number_field

URL = "/tenants/<trunk>/extensions"
blp = Blueprint("extensions", __name__,
                description="Extensions: users of a tenant, with home and remote endpoints")

DIALABLE = Regexp(r"^\+?[0-9]{2,20}$", error="must be a dialable number")
# At most 32 characters with the "+": the width of the forward_*_destination columns.
DESTINATION = Regexp(r"^(?=.{2,32}$)\+?[0-9*#]{2,32}$", error="must be a dialable number")
BLANK_OR_DIALABLE = Regexp(r"^(\+?[0-9]{2,20})?$", error="must be a dialable number, or blank")


class VoicemailSchema(Schema):
    enabled = ma.fields.Boolean()
    pin = ma.fields.String(load_only=True, allow_none=True, validate=Regexp(
        r"^[0-9]{4,10}$", error="must be 4 to 10 digits"), metadata={"description": "write-only"})
    pin_set = ma.fields.Boolean(dump_only=True)
    email = ma.fields.Email(allow_none=True, validate=ma.validate.Length(max=254))


class ForwardRuleSchema(Schema):
    enabled = ma.fields.Boolean()
    destination = ma.fields.String(allow_none=True, validate=DESTINATION)


class ForwardingSchema(Schema):
    always = ma.fields.Nested(ForwardRuleSchema)
    busy = ma.fields.Nested(ForwardRuleSchema)
    no_answer = ma.fields.Nested(ForwardRuleSchema)


class DualRegistrationSchema(Schema):
    enabled = ma.fields.Boolean(required=True)
    sip_peer = ma.fields.Boolean(metadata={
        "description": "register a second SIP endpoint as <user id>r (else ring external_number)"})
    external_number = ma.fields.String(allow_none=True, validate=BLANK_OR_DIALABLE)
    trunk = ma.fields.String(allow_none=True, metadata={
        "description": "name of the tenant's outbound trunk for external_number"})
    remote_user_id = ma.fields.String(dump_only=True, allow_none=True)
    ring_mode = Enum(RingMode, by_value=True, dump_only=True)


class ExtensionSchema(Schema):
    number = number_field(required=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    sip_user_id = ma.fields.String(dump_only=True)
    remote_user_id = ma.fields.String(dump_only=True, allow_none=True)
    caller_id_name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=64))
    caller_id_number = ma.fields.String(allow_none=True, validate=DIALABLE)
    voicemail = ma.fields.Nested(VoicemailSchema)
    rings_before_voicemail = ma.fields.Integer(validate=ma.validate.Range(1, 20))
    forwarding = ma.fields.Nested(ForwardingSchema)
    class_of_service = Enum(ClassOfService, by_value=True, metadata={
        "description": "permissions: how far the extension may call"})
    concurrent_call_limit = ma.fields.Integer(validate=ma.validate.Range(1, 100), metadata={
        "description": "counts the calls of both endpoints together"})
    ring_groups = ma.fields.List(number_field(), metadata={
        "description": "numbers of the ring groups the extension is subscribed to"})
    dual_registration = ma.fields.Nested(DualRegistrationSchema, dump_only=True)
    ring_mode = Enum(RingMode, by_value=True, dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)

    @ma.pre_dump
    def _flatten(self, ext, **_kwargs):
        return extension_view(ext)


class ExtensionUpdateSchema(ExtensionSchema):
    class Meta(Schema.Meta):
        exclude = ("number",)


def dual_registration_view(ext):
    return {
        "enabled": ext.dual_enabled,
        "sip_peer": ext.dual_sip_peer,
        "external_number": ext.dual_external_number,
        "trunk": ext.dual_trunk.name if ext.dual_trunk is not None else None,
        "remote_user_id": ext.remote_user_id,
        "ring_mode": ext.ring_mode,
    }


def extension_view(ext):
    return {
        "number": ext.number,
        "name": ext.name,
        "sip_user_id": ext.sip_user_id,
        "remote_user_id": ext.remote_user_id,
        "caller_id_name": ext.caller_id_name,
        "caller_id_number": ext.caller_id_number,
        "voicemail": {"enabled": ext.voicemail_enabled, "email": ext.voicemail_email,
                      "pin_set": ext.voicemail_pin_hash is not None},
        "rings_before_voicemail": ext.rings_before_voicemail,
        "forwarding": {
            kind: {"enabled": getattr(ext, f"forward_{kind}_enabled"),
                   "destination": getattr(ext, f"forward_{kind}_destination")}
            for kind in ("always", "busy", "no_answer")
        },
        "class_of_service": ext.class_of_service,
        "concurrent_call_limit": ext.concurrent_call_limit,
        "ring_groups": [g.number for g in ext.ring_groups],
        "dual_registration": dual_registration_view(ext),
        "ring_mode": ext.ring_mode,
        "created_at": ext.created_at,
        "updated_at": ext.updated_at,
    }


class DualRegistrationOutSchema(DualRegistrationSchema):
    @ma.pre_dump
    def _flatten(self, ext, **_kwargs):
        return dual_registration_view(ext)


class RingModeSchema(Schema):
    mode = Enum(RingMode, by_value=True, required=True)


class CredentialsSchema(Schema):
    user_id = ma.fields.String()
    remote_user_id = ma.fields.String(allow_none=True)
    password = ma.fields.String()
    realm = ma.fields.String()
    sip_server = ma.fields.String()


@blp.route("")
class Extensions(MethodView):
    @blp.response(200, ExtensionSchema(many=True))
    @blp.paginated()
    def get(self, trunk):
        """List a tenant's extensions"""
        return services.list_extensions(session(), principal(), trunk)

    @blp.arguments(ExtensionSchema)
    @blp.response(201, ExtensionSchema)
    def post(self, body, trunk):
        """Create an extension (a SIP password is generated)"""
        return services.create_extension(session(), principal(), trunk, **body)


@blp.route("/<number>")
class ExtensionByNumber(MethodView):
    @blp.response(200, ExtensionSchema)
    def get(self, trunk, number):
        """Get an extension"""
        return services.get_extension(session(), principal(), trunk, number)

    @blp.arguments(ExtensionUpdateSchema(partial=True))
    @blp.response(200, ExtensionSchema)
    def patch(self, body, trunk, number):
        """Change an extension's settings (they apply to both endpoints)"""
        return services.update_extension(session(), principal(), trunk, number, **body)

    @blp.response(204)
    def delete(self, trunk, number):
        """Delete an extension"""
        services.delete_extension(session(), principal(), trunk, number)


@blp.route("/<number>/dual-registration")
class DualRegistration(MethodView):
    @blp.response(200, DualRegistrationOutSchema)
    def get(self, trunk, number):
        """Get the extension's dual registration (the seed's Advanced tab)"""
        return services.get_extension(session(), principal(), trunk, number)

    @blp.arguments(DualRegistrationSchema)
    @blp.response(200, DualRegistrationOutSchema)
    def put(self, body, trunk, number):
        """Enable, change or disable dual registration"""
        return services.set_dual_registration(session(), principal(), trunk, number, **body)


@blp.route("/<number>/ring-mode")
class RingModeView(MethodView):
    @blp.response(200, RingModeSchema)
    def get(self, trunk, number):
        """Which of the extension's endpoints ring"""
        return {"mode": services.get_extension(session(), principal(), trunk, number).ring_mode}

    @blp.arguments(RingModeSchema)
    @blp.response(200, RingModeSchema)
    def put(self, body, trunk, number):
        """Choose which of the extension's endpoints ring: home, remote or both"""
        ext = services.set_ring_mode(session(), principal(), trunk, number, mode=body["mode"])
        return {"mode": ext.ring_mode}


@blp.route("/<number>/sip-credentials")
class SipCredentials(MethodView):
    @blp.response(200, CredentialsSchema)
    def get(self, trunk, number):
        """Reveal the SIP password of both endpoints (audited)"""
        return services.reveal_credentials(session(), principal(), trunk, number)


@blp.route("/<number>/sip-credentials/rotate")
class RotateSipCredentials(MethodView):
    @blp.response(200, CredentialsSchema)
    def post(self, trunk, number):
        """Replace the SIP password of both endpoints"""
        return services.rotate_credentials(session(), principal(), trunk, number)
