import secrets

from django.db import migrations, models

import conversations.models


def fill_message_public_ids(apps, schema_editor):
    Message = apps.get_model("conversations", "Message")
    messages = list(Message.objects.filter(public_id__isnull=True).only("pk"))
    for message in messages:
        message.public_id = f"msg_{secrets.token_urlsafe(16)}"
    Message.objects.bulk_update(messages, ["public_id"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="turn_started_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        # Added nullable first and filled per row, because a callable default is evaluated
        # once for all existing rows and would break uniqueness.
        migrations.AddField(
            model_name="message",
            name="public_id",
            field=models.CharField(editable=False, max_length=40, null=True),
        ),
        migrations.RunPython(fill_message_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="message",
            name="public_id",
            field=models.CharField(
                default=conversations.models.new_message_id,
                editable=False,
                max_length=40,
                unique=True,
            ),
        ),
    ]
