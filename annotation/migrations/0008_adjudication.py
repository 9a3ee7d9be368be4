"""Adjudications: a curator's final answer for (item, criterion), versioned, latest wins."""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0007_campaign_skip_reasons"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Adjudication",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("choice", models.CharField(choices=[("a", "A is better"), ("b", "B is better"), ("tie", "Tie"),
                                                     ("both_bad", "Both bad"), ("best_worst", "Best and worst picked"),
                                                     ("no_difference", "No clear difference")], max_length=16)),
                ("note", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("best", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                           related_name="+", to="annotation.candidate")),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="adjudications", to=settings.AUTH_USER_MODEL)),
                ("criterion", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                                related_name="adjudications", to="annotation.criterion")),
                ("item", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="adjudications",
                                           to="annotation.item")),
                ("worst", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                            related_name="+", to="annotation.candidate")),
            ],
            options={
                "ordering": ["id"],
                "indexes": [models.Index(fields=["item", "criterion", "-id"], name="adjudication_latest")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("best__isnull", False), ("choice", "best_worst"), ("worst__isnull", False),
                                     models.Q(("best", models.F("worst")), _negated=True)),
                            models.Q(models.Q(("choice", "best_worst"), _negated=True), ("best__isnull", True),
                                     ("worst__isnull", True)),
                            _connector="OR",
                        ),
                        name="adjudication_best_worst_consistent",
                    ),
                ],
            },
        ),
    ]
