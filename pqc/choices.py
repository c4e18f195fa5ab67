from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CertificateAction(models.TextChoices):
    PKI_INITIALISED = "pki_initialised", _("PKI initialised")
    ISSUED = "issued", _("Certificate issued")
    CSR_SIGNED = "csr_signed", _("CSR signed")
    REVOKED = "revoked", _("Certificate revoked")
