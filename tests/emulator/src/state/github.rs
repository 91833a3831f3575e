//! GitHub REST transitions (G1 to G3) and admin-token checks.

use super::*;

impl State {
    /// G1: mints an installation token after the App JWT was verified.
    pub fn installation_token(
        &mut self,
        jwt: &str,
        installation_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let skew = td(self.cfg.app_jwt_clock_skew).num_seconds();
        let max = td(self.cfg.app_jwt_max_lifetime).num_seconds();
        let app = tokens::verify_app_jwt(&self.cfg.apps, jwt, now.timestamp(), skew, max)
            .map_err(|m| ApiError::github(401, m))?;
        if app.installation_id != installation_id {
            return Err(ApiError::github(404, "Not Found"));
        }
        let token = tokens::opaque("ghs_");
        self.issue("installation token", &token);
        let expires_at = later(now, self.cfg.installation_token_lifetime);
        self.installation_tokens.insert(
            token.clone(),
            ExpiringToken {
                value: installation_id,
                expires_at,
            },
        );
        Ok(json!({
            "token": token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"organization_self_hosted_runners": "write", "administration": "write"},
            "repository_selection": "all",
        }))
    }

    pub(super) fn check_github_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if self.cfg.pats.iter().any(|p| p.expose_secret() == token) {
            return Ok(());
        }
        match self.installation_tokens.get(token) {
            Some(t) if t.expires_at > now => Ok(()),
            _ => Err(bearer_mismatch()),
        }
    }

    /// G2: a registration token for `scope`.
    pub fn registration_token(
        &mut self,
        bearer: &str,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        self.check_github_token(bearer, now)?;
        let token = tokens::opaque("AABF");
        self.issue("registration token", &token);
        let expires_at = later(now, self.cfg.registration_token_lifetime);
        self.registration_tokens.insert(
            token.clone(),
            ExpiringToken {
                value: scope,
                expires_at,
            },
        );
        Ok(
            json!({"token": token, "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
        )
    }

    /// G3: checks the RemoteAuth registration token and body, returns `S` and an admin JWT.
    pub fn runner_registration(
        &mut self,
        reg_token: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let scope = match self.registration_tokens.get(reg_token) {
            Some(t) if t.expires_at > now => t.value.clone(),
            _ => return Err(ApiError::github(401, "Bad credentials")),
        };
        let parsed: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::github(400, format!("Problems parsing JSON: {e}")))?;
        let url = parsed
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::github(422, "Invalid request.\n\n\"url\" wasn't supplied."))?;
        if parsed.get("runner_event").and_then(Value::as_str) != Some("register") {
            return Err(ApiError::github(
                422,
                "Invalid request.\n\n\"runner_event\" must be \"register\".",
            ));
        }
        let url_scope = parse_config_url(url).map_err(|m| ApiError::github(422, m))?;
        if !url_scope.same_as(&scope) {
            return Err(ApiError::github(
                403,
                format!(
                    "Registration token was issued for {scope}, not for the scope of {url:?} ({url_scope})"
                ),
            ));
        }
        let iat = now.timestamp();
        let claims = AdminClaims {
            iss: "actions-emulator".to_owned(),
            aud: scope.to_string(),
            iat,
            nbf: iat,
            exp: (self.cfg.admin_token_style != AdminTokenStyle::WithoutExp)
                .then(|| iat.saturating_add(td(self.cfg.admin_token_lifetime).num_seconds())),
            generation: self.admin_generation,
        };
        let token = tokens::mint_admin(&self.admin_key, &claims, self.cfg.admin_token_style)
            .map_err(|e| ApiError::Plain {
                status: 500,
                body: format!("minting admin token failed: {e}"),
            })?;
        self.issue("admin token", &token);
        let generation = self.admin_generation;
        self.admin_tokens
            .retain(|_, c| c.generation >= generation && c.exp.is_none_or(|exp| exp > iat));
        self.admin_tokens.insert(token.clone(), claims);
        Ok(json!({"url": self.actions_url(), "token": token, "token_schema": "OAuthAccessToken"}))
    }

    /// Checks `Authorization: Bearer {admin}` on Actions service calls.
    pub fn check_admin(&self, bearer: Option<&str>, now: DateTime<Utc>) -> Result<(), ApiError> {
        let token = bearer.ok_or(ApiError::Unauthorized)?;
        match self.admin_tokens.get(token) {
            Some(c)
                if c.generation >= self.admin_generation
                    && c.exp.is_none_or(|exp| exp > now.timestamp()) =>
            {
                Ok(())
            }
            _ => Err(ApiError::Unauthorized),
        }
    }

    /// Control: every admin token issued so far stops working.
    pub fn expire_admin_tokens(&mut self) {
        self.admin_generation += 1;
    }

    /// Control: `S` changes; the old tenant path stops answering.
    pub fn rotate_tenant(&mut self) {
        self.tenant += 1;
    }
}

impl State {
    /// GitHub REST "List self-hosted runners" (organization, repository or enterprise): the
    /// runners every scale set registered, in id order, `per_page` from `page` (1-based), with
    /// `total_count`; runners carry their scale set's runner group and labels.
    pub fn list_self_hosted_runners(
        &self,
        bearer: &str,
        per_page: usize,
        page: usize,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        self.check_github_token(bearer, now)?;
        let runners: Vec<Value> = self
            .runners
            .values()
            .skip(per_page.saturating_mul(page.saturating_sub(1)))
            .take(per_page)
            .map(|r| {
                let set = self.scale_sets.get(&r.scale_set_id);
                let labels: Vec<Value> = set
                    .map(|s| s.labels.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(i, name)| json!({"id": i + 1, "name": name, "type": "read-only"}))
                    .collect();
                json!({
                    "id": r.id,
                    "name": r.name,
                    "os": "Linux",
                    "status": if r.connected_at.is_some() { "online" } else { "offline" },
                    "busy": r.job.is_some(),
                    "ephemeral": true,
                    "runner_group_id": set.map_or(1, |s| s.runner_group_id),
                    "labels": labels,
                })
            })
            .collect();
        Ok(json!({"total_count": self.runners.len(), "runners": runners}))
    }

    /// GitHub REST "Delete a self-hosted runner": 404 for an unknown id, 422 while it runs a job.
    pub fn delete_self_hosted_runner(
        &mut self,
        bearer: &str,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.check_github_token(bearer, now)?;
        match self.runners.get(&id) {
            None => Err(ApiError::github(404, "Not Found")),
            Some(r) if r.job.is_some() => Err(ApiError::github(
                422,
                format!(
                    "Bad request - Runner \"{}\" is still running a job\"",
                    r.name
                ),
            )),
            Some(_) => {
                self.drop_runner(id);
                Ok(())
            }
        }
    }
}
