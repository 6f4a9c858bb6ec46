"""Push credentials for ACR without its admin user.

`listRegistryCredentials` only works with the admin user on, which this stack
keeps off. Instead we do what `az acr login` does (Azure/acr docs,
"AAD-OAuth"): take the deployer's Entra ID access token for Azure Resource
Manager (azure-native's getClientToken) and exchange it at the registry's
`/oauth2/exchange` endpoint for an ACR refresh token. Docker accepts that
token as the password of the fixed user below. The token lives for about
three hours, is a secret Output, and is re-fetched on every `pulumi up`.
Pushing also needs the AcrPush role, which the registry component grants.
"""
import json
import urllib.parse
import urllib.request

#: The user name ACR expects alongside a refresh token.
TOKEN_USER = "00000000-0000-0000-0000-000000000000"


def exchange_token(login_server: str, tenant_id: str, aad_token: str, timeout_s: float = 30) -> str:
    """Return an ACR refresh token for `login_server` in exchange for an Entra ID access token."""
    body = urllib.parse.urlencode({
        "grant_type": "access_token", "service": login_server,
        "tenant": tenant_id, "access_token": aad_token,
    }).encode()
    request = urllib.request.Request(
        f"https://{login_server}/oauth2/exchange", data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (https only)
        return json.load(response)["refresh_token"]
