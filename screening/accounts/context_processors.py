from screening.accounts.roles import can_read_cases, can_upload, is_admin


def roles(request):
    user = getattr(request, "user", None)
    return {
        "user_is_admin": is_admin(user),
        "user_can_read_cases": can_read_cases(user),
        "user_can_upload": can_upload(user),
    }
