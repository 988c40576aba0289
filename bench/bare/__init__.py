"""The reference line of the benchmark: a bare DRF view in a Django project with nothing else.

A DRF ``APIView`` (``AllowAny``, no authentication classes) answering a body of the size of a real
context, in a project with only the middleware a production deployment keeps
(``SecurityMiddleware``, ``CommonMiddleware``), served by the same gunicorn command as every other
mode. Every ratio of the report is taken against it. Nothing of the product is imported.
"""
