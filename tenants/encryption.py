"""Encryption at rest of the webhook and user token secrets.

A stored secret is ``"enc:v1:" + <Fernet token>``, encrypted with the first key of
``settings.VIZOCHOK_ENCRYPTION_KEYS`` and decrypted with any of them. A stored value
without the prefix is a plain secret written before encryption existed: it is read as it
is, and the next write or ``reencrypt_secrets`` encrypts it. An empty string means "no
secret" and is stored as it is.

``EncryptedSecretField`` decrypts on attribute access, not when a row is loaded, so a row
whose secret no key decrypts still loads. Only code that uses that secret gets
``SecretUndecryptable``. Saving the row, and ``dumpdata``, never decrypt a loaded secret.
"""

import functools
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute

logger = logging.getLogger(__name__)

ENCRYPTED_PREFIX = "enc:v1:"


class UndecryptableValueError(ValueError):
    """A stored value that none of the configured keys decrypts."""


class StoredSecret(str):
    """The text of a secret column as it is in the database (ciphertext or a legacy plain value).

    A loaded secret stays in this form on the model instance until it is read, so saving
    the instance writes it back without decrypting or re-encrypting it.
    """


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _keys() -> tuple[str, ...]:
    return tuple(settings.VIZOCHOK_ENCRYPTION_KEYS)


def encrypt(plaintext: str) -> str:
    """Return the stored form of ``plaintext``, encrypted with the first configured key."""
    if not plaintext:
        return plaintext
    token = _fernet(_keys()).encrypt(plaintext.encode("utf-8"))
    return ENCRYPTED_PREFIX + token.decode("ascii")


def decrypt(stored: str) -> str:
    """Return the secret of a stored value; raise ``UndecryptableValueError`` if no key fits.

    A value without the prefix is a plain secret from before encryption and is returned
    as it is.
    """
    if not is_encrypted(stored):
        return str(stored)
    token = stored[len(ENCRYPTED_PREFIX) :].encode("ascii", errors="replace")
    try:
        return _fernet(_keys()).decrypt(token).decode("utf-8")
    except (InvalidToken, UnicodeDecodeError):
        raise UndecryptableValueError("no configured encryption key decrypts the value") from None


def is_encrypted(stored: str) -> bool:
    return stored.startswith(ENCRYPTED_PREFIX)


def is_current(stored: str) -> bool:
    """Return True when ``stored`` is empty or encrypted with the first configured key."""
    if not stored:
        return True
    if not is_encrypted(stored):
        return False
    token = stored[len(ENCRYPTED_PREFIX) :].encode("ascii", errors="replace")
    try:
        Fernet(_keys()[0]).decrypt(token)
    except InvalidToken:
        return False
    return True


def reencrypt(stored: str) -> str:
    """Return ``stored`` encrypted with the first configured key.

    Raises ``UndecryptableValueError`` when no configured key decrypts it.
    """
    return encrypt(decrypt(stored))


class EncryptedSecretDescriptor(DeferredAttribute):
    """Decrypts a loaded secret when the attribute is read; assigned values are plain text.

    ``__set__`` makes this a data descriptor, so reads come here even though the value is
    in the instance's ``__dict__``.
    """

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if not isinstance(value, StoredSecret):
            return value
        try:
            return decrypt(value)
        except UndecryptableValueError:
            # Imported here because vizochok.exceptions imports DRF, whose settings import
            # the authentication class, which imports the models that use this field.
            from vizochok.exceptions import SecretUndecryptable

            model = type(instance)._meta.label
            logger.error(
                "tenants.secret.undecryptable",
                extra={"model": model, "field": self.field.name, "object_id": instance.pk},
            )
            raise SecretUndecryptable(
                f"The stored {self.field.verbose_name} of {model} {instance.pk} cannot be "
                "decrypted with any key in VIZOCHOK_ENCRYPTION_KEYS. Restore the key that "
                "encrypted it, or set a new secret."
            ) from None


class EncryptedSecretField(models.TextField):
    """A secret stored encrypted (see the module docstring); plain text in Python.

    Lookups compare stored values, which differ for every encryption of the same secret,
    so filter only on the empty string.

    NOTE: ``bulk_update()`` of these fields and ``loaddata`` read the attribute, so they
    decrypt and encrypt again, and raise ``SecretUndecryptable`` when no key decrypts it.
    """

    descriptor_class = EncryptedSecretDescriptor

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return StoredSecret(value)

    def to_python(self, value: Any) -> Any:
        # ``loaddata`` passes the stored values that ``dumpdata`` wrote, and encrypting them
        # again would store a secret that decrypts to its own ciphertext.
        if isinstance(value, str) and is_encrypted(value):
            return StoredSecret(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        if value is None or isinstance(value, StoredSecret):
            return value
        return encrypt(str(value))

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        # Django's version reads the attribute, which would decrypt a loaded secret only for
        # get_prep_value to encrypt it again, and fail when no key decrypts it.
        return stored_value(model_instance, self.attname)

    def value_from_object(self, obj: Any) -> Any:
        # The serializers (dumpdata) read this: they get the stored value, never plain text.
        return stored_value(obj, self.attname)


class EncryptedSecretsMixin:
    """Model mixin that saves and reloads secret fields without decrypting them.

    Django's ``refresh_from_db`` copies each field through its descriptor, which would
    decrypt, and so fail on a secret that no key decrypts. A full ``save()`` of a loaded
    row writes neither the secrets loaded with it nor ``fields_kept_on_full_save``: writing
    back a loaded secret would undo a rotation or a ``reencrypt_secrets`` run that
    committed in between. Secrets assigned since the load are written.
    """

    # Names of the fields that services change in the database only.
    fields_kept_on_full_save: frozenset[str] = frozenset()

    _meta: Any
    _state: Any
    _prefetched_objects_cache: dict[str, Any]
    pk: Any
    __dict__: dict[str, Any]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if (
            not args
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
            and not self._state.adding
        ):
            unchanged_fields = self.fields_kept_on_full_save | {
                name
                for name in _secret_attnames(type(self))  # type: ignore[arg-type]
                if isinstance(self.__dict__.get(name), StoredSecret)
            }
            if unchanged_fields:
                kwargs["update_fields"] = [
                    field.attname
                    for field in self._meta.concrete_fields
                    if not field.primary_key
                    and not field.generated
                    and field.attname in self.__dict__
                    and field.attname not in unchanged_fields
                ]
        super().save(*args, **kwargs)  # type: ignore[misc]

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        secret_names = _secret_attnames(type(self))  # type: ignore[arg-type]
        if fields is None:
            other_names = [
                field.attname
                for field in self._meta.concrete_fields
                if field.attname not in secret_names and field.attname in self.__dict__
            ]
            refreshed_secrets = [name for name in secret_names if name in self.__dict__]
        else:
            other_names = [name for name in fields if name not in secret_names]
            refreshed_secrets = [name for name in fields if name in secret_names]
        if other_names or not refreshed_secrets:
            super().refresh_from_db(  # type: ignore[misc]
                using=using, fields=other_names or fields, from_queryset=from_queryset
            )
        if refreshed_secrets:
            queryset = from_queryset
            if queryset is None:
                queryset = type(self)._base_manager.db_manager(using)  # type: ignore[attr-defined]
            row = queryset.filter(pk=self.pk).values(*refreshed_secrets).get()
            self.__dict__.update(row)
        if fields is None:
            # Django drops these on a refresh of the whole row, but not when it is given the
            # field names that the super() call above passes.
            self._prefetched_objects_cache = {}
            for relation in self._meta.related_objects:
                if relation.is_cached(self):
                    relation.delete_cached_value(self)


@functools.cache
def _secret_attnames(model: type) -> frozenset[str]:
    return frozenset(
        field.attname
        for field in model._meta.concrete_fields  # type: ignore[attr-defined]
        if isinstance(field, EncryptedSecretField)
    )


def stored_value(instance: models.Model, attname: str) -> str:
    """Return a secret field's value without decrypting it, "" when it is unset.

    A value loaded from the database comes back as ``StoredSecret``, which a save or a
    lookup uses unchanged. A value assigned since then is still plain text.
    """
    if attname not in instance.__dict__:
        instance.refresh_from_db(fields=[attname])
    value: str | None = instance.__dict__[attname]
    return value or ""


def secret_is_set(instance: models.Model, attname: str) -> bool:
    """Return whether a secret field contains a secret, without decrypting it."""
    return bool(stored_value(instance, attname))


def secret_is_readable(instance: models.Model, attname: str) -> bool:
    """Return whether a secret field is empty or decrypts with a configured key."""
    stored = stored_value(instance, attname)
    if not isinstance(stored, StoredSecret):
        return True
    try:
        decrypt(stored)
    except UndecryptableValueError:
        return False
    return True
