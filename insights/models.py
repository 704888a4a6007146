"""Usage history: one row per volume per size measurement, thinned as it ages."""

from django.db import models

from volumes.models import Volume


class VolumeUsageSample(models.Model):
    volume = models.ForeignKey(Volume, on_delete=models.CASCADE, related_name="usage_samples")
    # When the engine measured the size (the refresh's time), not when the row was written.
    at = models.DateTimeField(db_index=True)
    size_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["volume_id", "at"]
        # The unique index on (volume, at) also serves "this volume's samples since T".
        constraints = [models.UniqueConstraint(fields=["volume", "at"], name="insights_sample_unique_volume_at")]

    def __str__(self):
        return f"{self.volume_id} {self.at:%Y-%m-%d %H:%M} {self.size_bytes}"
