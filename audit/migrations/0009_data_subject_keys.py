"""The data subjects' keys (``audit.subjects``): personal data in entries and events is
sealed under them, and erasing a subject destroys its key (issue 15, item 10)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0008_transparency_log'),
    ]

    operations = [
        migrations.CreateModel(
            name='DataSubjectKey',
            fields=[
                ('subject', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('wrapped', models.BinaryField(max_length=64, null=True)),
                ('kek_version', models.PositiveIntegerField()),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('erased_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
    ]
