"""Note templates (issue 24): text an admin keeps for the readers' notes, chosen in the decision form."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class NoteTemplate(models.Model):
    name = models.CharField(max_length=80, unique=True, help_text="What readers pick in the form.")
    text = models.TextField(help_text="Put into the note, where the reader edits it.")
    active = models.BooleanField(default=True, help_text="Offered in the form (retire one instead of deleting it).")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name="") & ~Q(text=""), name="note_template_not_empty")]

    def __str__(self) -> str:
        return self.name
