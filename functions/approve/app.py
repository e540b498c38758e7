"""GET and POST /v1/approve/{token}: the approve link of the approval email (GET shows, POST decides)."""

from __future__ import annotations

from mangum import Mangum

from shared.approvals.links import make_router
from shared.http.app import create_app
from shared.http.health import router as health_router

router = make_router("approve")

app = create_app(router, health_router, title="AgentPay approve link")
handler = Mangum(app, lifespan="off")
