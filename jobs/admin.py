from django.contrib import admin

from jobs.models import Job, ResourceLock


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "target", "status", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("target",)


admin.site.register(ResourceLock)
