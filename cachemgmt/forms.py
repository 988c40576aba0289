"""Forms of the admin's Cache page (the API uses serializers with the same rules)."""

from __future__ import annotations

from django import forms

from cachemgmt.serializers import MAX_ID
from cachemgmt.services import CLEAR_CHOICES

NAMESPACE_LABELS = {
    "user_context": "User contexts",
    "zones": "Zones",
    "all": "Everything (all namespaces)",
}


class CacheClearForm(forms.Form):
    namespace = forms.ChoiceField(choices=[(name, NAMESPACE_LABELS[name]) for name in CLEAR_CHOICES])
    user_id = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, label="User id")

    def describe(self) -> str:
        user_id = self.cleaned_data.get("user_id")
        if user_id is not None:
            return f"the cached context of user {user_id}"
        return (
            f"the {self.cleaned_data['namespace']} namespace"
            if self.cleaned_data["namespace"] != "all"
            else "every namespace"
        )
