from django.urls import path

from accounts import apis

urlpatterns = [
    # First: the route nearly every request takes.
    path("me", apis.MeApi.as_view(), name="me"),
    path("auth/login", apis.LoginApi.as_view(), name="auth-login"),
    path("auth/refresh", apis.RefreshApi.as_view(), name="auth-refresh"),
    path("auth/logout", apis.LogoutApi.as_view(), name="auth-logout"),
    path("auth/sessions", apis.SessionListApi.as_view(), name="auth-sessions"),
    path("auth/sessions/<str:session_id>", apis.SessionEndApi.as_view(), name="auth-session"),
]
