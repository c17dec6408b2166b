"""The server as code: prefect.yaml read and checked (spec, declarations, check), each kind of
server object compared with it (kinds/, plan) and made to match (apply, record), unowned objects
imported (importing), the flow image's tag, and the repository's settings (settings.py), which the
platform package (stack/) reads too.

    python -m deployments plan | apply | check | import
"""
