"""Forms of the admin's Cache page (the API uses serializers with the same rules)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_user_model

from cachemgmt.models import CacheAuditEntry
from cachemgmt.serializers import MAX_ID
from cachemgmt.services import CLEAR_CHOICES

NAMESPACE_LABELS = {
    "user_context": "User contexts",
    "zones": "Zones",
    "all": "Everything (all namespaces)",
}


def _user_picker() -> AutocompleteSelect:
    """The admin's own user autocomplete (searches the user admin's fields), through a foreign key
    to the user model this app owns: cachemgmt never imports the accounts app."""
    return AutocompleteSelect(CacheAuditEntry._meta.get_field("actor"), admin.site)


class CacheClearForm(forms.Form):
    namespace = forms.ChoiceField(choices=[(name, NAMESPACE_LABELS[name]) for name in CLEAR_CHOICES])
    user_id = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, label="User id")
    # The page's one-user clear: picked by username; checked (it exists) before confirming.
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.all(), required=False, widget=_user_picker(), label="User"
    )

    # "user" when the page's one-user form sent it: then a user must be picked.
    scope = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        scope = cleaned.pop("scope", "")
        user = cleaned.pop("user", None)
        if scope == "user" and user is None and not cleaned.get("user_id"):
            raise forms.ValidationError("pick a user to clear one user's context")
        if user is not None:
            cleaned["user_id"] = user.pk
            self.user_label = f"{user.get_username()} (id {user.pk})"
        return cleaned

    def describe(self) -> str:
        user_id = self.cleaned_data.get("user_id")
        if user_id is not None:
            return f"the cached context of user {getattr(self, 'user_label', user_id)}"
        return (
            f"the {self.cleaned_data['namespace']} namespace"
            if self.cleaned_data["namespace"] != "all"
            else "every namespace"
        )
