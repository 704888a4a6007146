"""The Hosts page's form. The TLS client key is write-only (never rendered back)."""

from django import forms

from hosts import refs

PEM = forms.Textarea(attrs={"rows": 4, "cols": 64, "class": "mono small", "spellcheck": "false"})


class HostForm(forms.Form):
    name = forms.CharField(max_length=63, help_text=f"{refs.HOST_NAME_RULE[0].upper()}{refs.HOST_NAME_RULE[1:]} characters; "
                                                    "its volumes are shown as NAME:volume.")
    url = forms.CharField(label="Address", max_length=512, required=False,
                          widget=forms.TextInput(attrs={"class": "mono", "size": 50,
                                                        "placeholder": "blank, tcp://10.0.0.5:2376 or ssh://deploy@db1"}),
                          help_text="Blank: the worker's own local Docker socket (a worker beside its engine). "
                                    "tcp://HOST:PORT: TLS with a client certificate. ssh://user@host: the worker's SSH keys.")
    tls_ca_cert = forms.CharField(label="CA certificate (PEM)", required=False, widget=PEM, strip=True)
    tls_client_cert = forms.CharField(label="Client certificate (PEM)", required=False, widget=PEM, strip=True)
    tls_client_key = forms.CharField(label="Client key (PEM)", required=False, strip=True,
                                     widget=forms.Textarea(attrs={"rows": 4, "cols": 64, "class": "mono small",
                                                                  "autocomplete": "off", "spellcheck": "false"}),
                                     help_text="Stored encrypted and never shown again; leave empty to keep the stored one.")
    description = forms.CharField(max_length=255, required=False)

    def __init__(self, *args, instance=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance = instance
        if instance is not None:
            self.fields["name"].disabled = True
            if not self.is_bound:
                self.initial.update(name=instance.name, url=instance.url, tls_ca_cert=instance.tls_ca_cert,
                                    tls_client_cert=instance.tls_client_cert, description=instance.description)
            if instance.tls_client_key_enc:
                self.fields["tls_client_key"].help_text = "A key is stored (encrypted). Leave empty to keep it."
