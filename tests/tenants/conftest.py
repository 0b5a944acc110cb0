import pytest

from tenants.scope import platform_principal
from tenants.services import extensions, tenants

ROOT = platform_principal("test")


@pytest.fixture
def root():
    return ROOT


@pytest.fixture
def tenant(session):
    return tenants.create_tenant(session, ROOT, name="Acme", trunk_number="12345")


@pytest.fixture
def extension(session, tenant):
    return extensions.create_extension(session, ROOT, "12345", number="101", name="Alice")
